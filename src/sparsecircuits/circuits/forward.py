"""Forward passes for pruning: logits only where the task reads them, in length buckets.

Task examples are right-padded and read at position `length - 1`. The unembedding and the
bigram table cost as much as a block at vocab 2048, so `last_logits` applies them to the read
positions only; it is the model's own forward otherwise (tests compare it with `model(...)`).
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
    n, t = tokens.shape
    if t > model.cfg.n_ctx:
        raise ValueError(f"sequence of {t} tokens is longer than n_ctx={model.cfg.n_ctx}")
    x = model.embed(tokens)  # [N, T, d_model]
    if model.pos_embed is not None:
        x = x + model.pos_embed(torch.arange(t, device=tokens.device))
    for block in model.blocks:
        x = block(x, hooks)
    rows = torch.arange(n, device=tokens.device)
    last = lengths.to(tokens.device) - 1
    h = model.final_norm(x[rows, last])  # [N, d_model]
    logits = model.unembed(h) + model.logits_bias  # [N, vocab]
    if model.bigram is not None:
        logits = logits + model.bigram[tokens[rows, last]]
    return logits


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
