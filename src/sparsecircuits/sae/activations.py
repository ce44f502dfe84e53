"""Activations at one hook point, streamed from a model over its pretraining corpus.

Recording uses the model's own hook mechanism (`model.hooks`): a hook at the location takes
the activation and stops the forward there, so the blocks after it are never computed.

`ActivationBuffer` feeds the SAE trainer. Refill r draws `buffer_windows` random windows of
n_ctx tokens from the train shard (`data.shards.batch_starts`, seeded by (seed, r)), records
their activations, shuffles all their positions together (seeded by (seed, r) too) and serves
them as consecutive batches. Batch `step` is therefore a pure function of (seed, step): a
resumed run sees exactly the batches an uninterrupted one would (docs/sae.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from sparsecircuits.data.shards import TokenShard, batch_starts
from sparsecircuits.errors import SAEError
from sparsecircuits.model.gpt import GPT

RECORD_BATCH = 16
"""Windows per forward pass while recording."""


def check_location(model: GPT, location: str) -> int:
    """The width of hook point `location`; SAEError naming the valid ones if it is unknown."""
    width = model.hook_point_width.get(location)
    if width is None:
        layers = model.cfg.n_layer
        raise SAEError(
            f"unknown location {location!r:.60}: use L.resid_pre, L.resid_mid, L.resid_post "
            f"(L = 0..{layers - 1}), final_resid, or a node location such as 0.mlp.post_act"
        )
    return width


class _Recorded(Exception):
    """Carries the recorded activation out of the forward pass, which it ends early."""

    def __init__(self, act: Tensor):
        super().__init__()
        self.act = act


@torch.no_grad()
def record(model: GPT, tokens: Tensor, location: str) -> Tensor:
    """Activations [batch, seq, width] at `location` for tokens [batch, seq]."""

    def stop(x: Tensor) -> Tensor:
        raise _Recorded(x.detach())

    device = next(model.parameters()).device
    try:
        model(tokens.to(device), hooks={location: stop})
    except _Recorded as done:
        return done.act
    raise SAEError(f"the forward pass never reached location {location!r:.60}")


def record_windows(model: GPT, windows: Tensor, location: str) -> Tensor:
    """Activations [n * seq, width] of every position of windows [n, seq], in order."""
    parts = [record(model, windows[i : i + RECORD_BATCH], location)
             for i in range(0, len(windows), RECORD_BATCH)]  # fmt: skip
    return torch.cat(parts).flatten(0, 1)


class ActivationBuffer:
    """Shuffled training batches [batch_size, width] of activations at one location."""

    def __init__(self, model: GPT, shard: TokenShard, location: str, batch_size: int,
                 buffer_windows: int, seed: int):  # fmt: skip
        self.model, self.shard, self.location = model, shard, location
        self.n_ctx = model.cfg.n_ctx
        self.batch_size, self.buffer_windows, self.seed = batch_size, buffer_windows, seed
        per_refill = buffer_windows * self.n_ctx
        if per_refill < batch_size:
            raise SAEError(f"the activation buffer ({buffer_windows} windows x {self.n_ctx} "
                           f"tokens) is smaller than one batch of {batch_size}; raise "
                           "buffer_windows or lower batch_size")  # fmt: skip
        self.batches_per_refill = per_refill // batch_size
        self._cached: tuple[int, Tensor] | None = None

    def refill(self, r: int) -> Tensor:
        """Every activation of refill r [buffer_windows * n_ctx, width], shuffled."""
        if self._cached is not None and self._cached[0] == r:
            return self._cached[1]
        starts = batch_starts(len(self.shard), self.n_ctx, self.buffer_windows, self.seed, r)
        acts = record_windows(self.model, self.shard.windows(starts, self.n_ctx), self.location)
        order = np.random.default_rng([self.seed, r, 1]).permutation(len(acts))
        acts = acts[torch.from_numpy(order).to(acts.device)]
        self._cached = (r, acts)
        return acts

    def batch(self, step: int) -> Tensor:
        """Training batch `step` [batch_size, width]."""
        r, i = divmod(step, self.batches_per_refill)
        return self.refill(r)[i * self.batch_size : (i + 1) * self.batch_size]

    def batches(self, start: int, stop: int) -> Iterator[tuple[int, Tensor]]:
        for step in range(start, stop):
            yield step, self.batch(step)
