"""Forward passes for pruning: logits only where the task reads them, in length buckets.

Task examples are right-padded and read at position `length - 1`; `last_logits` asks the
model for the logits at those positions only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook
from sparsecircuits.tasks.encoding import TaskBatch

HooksFn = Callable[[int, int], Mapping[str, Hook]]
"""(batch, seq) -> hooks for one forward pass of that shape."""


def last_logits(
    model: GPT, tokens: Tensor, lengths: Tensor, hooks: Mapping[str, Hook] | None = None
) -> Tensor:
    """Logits at position `lengths - 1` of each row: tokens [N, T] -> [N, vocab]."""
    return model(tokens, hooks, read_positions=lengths - 1)


def length_chunks(lengths: Tensor, size: int) -> Iterator[Tensor]:
    """Index chunks of at most `size` examples of similar length (less padding)."""
    order = torch.argsort(lengths, stable=True)
    for start in range(0, len(order), size):
        yield order[start : start + size]


@torch.no_grad()
def batch_last_logits(
    model: GPT, batch: TaskBatch, hooks_fn: HooksFn | None = None, chunk: int = 128
) -> Tensor:
    """Last-position logits [N, vocab] of every example of `batch`, in the batch's order."""
    device = next(model.parameters()).device
    out = torch.empty(len(batch), model.cfg.vocab_size)
    for idx in length_chunks(batch.lengths, chunk):
        sub = batch.select(idx).to(device)
        hooks = hooks_fn(len(sub), sub.tokens.shape[1]) if hooks_fn is not None else None
        out[idx] = last_logits(model, sub.tokens, sub.lengths, hooks).float().cpu()
    return out
