"""Task metrics as pure, differentiable torch functions of the logits at the choice position.

- task loss = mean cross entropy of the correct token over the whole vocabulary (the paper's
  definition; the pruner drives it to its target, 0.15 by default);
- two-way loss = cross entropy of the correct token among {correct, wrong} only
  = softplus(logit_wrong - logit_correct);
- accuracy = share of examples with logit_correct > logit_wrong, a tie counting 1/2 (so a
  model with constant logits scores exactly 50% on balanced classes).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class HasCandidates(Protocol):
    """Anything with the candidate ids of a batch (a TaskBatch, or a sub-batch of one)."""

    correct_id: torch.Tensor
    wrong_id: torch.Tensor


def _reduce(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    if reduction == "none":
        return per_example
    raise ValueError(f"unknown reduction {reduction!r}")


def last_position_logits(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Logits at position `length - 1` of each row: [N, T, V] -> [N, V]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, lengths.to(logits.device) - 1]


def choice_logits(last_logits: torch.Tensor, batch: HasCandidates) -> torch.Tensor:
    """[N, V] -> [N, 2]: the logits of (correct, wrong)."""
    ids = torch.stack([batch.correct_id, batch.wrong_id], dim=1).to(last_logits.device)
    return last_logits.gather(1, ids)


def task_loss(
    last_logits: torch.Tensor, batch: HasCandidates, reduction: str = "mean"
) -> torch.Tensor:
    """Cross entropy of the correct token over the full vocabulary; [N, V] -> scalar."""
    target = batch.correct_id.to(last_logits.device)
    return F.cross_entropy(last_logits.float(), target, reduction=reduction)


def two_way_loss(
    last_logits: torch.Tensor, batch: HasCandidates, reduction: str = "mean"
) -> torch.Tensor:
    """Cross entropy of the correct token among {correct, wrong}; [N, V] -> scalar."""
    pair = choice_logits(last_logits, batch).float()  # [N, 2]
    return _reduce(F.softplus(pair[:, 1] - pair[:, 0]), reduction)


def accuracy(
    last_logits: torch.Tensor, batch: HasCandidates, reduction: str = "mean"
) -> torch.Tensor:
    """Share with logit(correct) > logit(wrong), ties counting 1/2 (not differentiable)."""
    pair = choice_logits(last_logits, batch)  # [N, 2]
    correct, wrong = pair[:, 0], pair[:, 1]
    score = (correct > wrong).float() + 0.5 * (correct == wrong).float()
    return _reduce(score, reduction)
