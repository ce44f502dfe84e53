"""Many single-node edits scored at once: the report's table of every node's ablations.

Scoring one edit is one forward of the task's examples, and the report of a 175-node circuit
asks for 700 of them (mean and zero ablation, in the full model and in the circuit alone).
The forwards are arithmetic-bound, so the saving is in not repeating work:

- Edits are grouped by the layer they edit. The residual stream entering each block is
  recorded once (`_streams_entering_blocks`), and a group's forward starts at its block
  (`GPT.forward`'s `from_layer` / `resid`): an edit in the last layer costs one block, not all.
- `group` edits share one forward: the batch is repeated once per edit and a hook per location
  sets node i_g in copy g only (`grouped_set_hooks`).
- Rows are split into a few groups of similar length (`length_buckets`), each padded only to
  its own longest row: right padding is exact for a causal model, so this changes no number.
- Only the choice position's logits are computed (`GPT.forward`'s `read_positions`); each
  copy's rows are scored by `interventions.score_logits`, as `interventions.score` scores a
  lone batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook, Recorder, compose
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.interventions import score_logits

GROUP = 16
"""Edits per forward: 16 copies of 32 examples is a batch of 512 rows."""


def grouped_set_hooks(edits: Sequence[tuple[str, int, float]], rows: int) -> dict[str, Hook]:
    """Hooks for a batch of len(edits) copies of `rows` rows: copy g has node (location_g,
    index_g) set to value_g at every position, and nothing else changed."""
    by_location: dict[str, tuple[list[int], list[int], list[float]]] = {}
    for g, (location, index, value) in enumerate(edits):
        copies, indices, values = by_location.setdefault(location, ([], [], []))
        copies.append(g)
        indices.append(index)
        values.append(value)

    def make(copies: list[int], indices: list[int], values: list[float]) -> Hook:
        row = torch.tensor(copies)[:, None] * rows + torch.arange(rows)[None, :]  # [k, rows]
        col = torch.tensor(indices)[:, None].expand(-1, rows)  # [k, rows]
        val = torch.tensor(values, dtype=torch.float32)[:, None]  # [k, 1]

        def hook(x: Tensor) -> Tensor:  # [copies * rows, T, width]
            x = x.clone()
            r, c = row.to(x.device), col.to(x.device)
            x[r, :, c] = val.to(x)[..., None].expand(-1, rows, x.shape[1])  # [k, rows, T]
            return x

        return hook

    return {loc: make(*spec) for loc, spec in by_location.items()}


@torch.no_grad()
def score_edits(
    model: GPT,
    batch: TaskBatch,
    edits: Sequence[tuple[str, int, float]],
    base_hooks: Mapping[str, Hook] | None = None,
    calibration: tuple[float, float] | None = None,
    group: int = GROUP,
) -> list[dict[str, Any]]:
    """For each (location, index, value), in order: the task scored (`score_logits`) with
    that one node set to the value at every position, on top of `base_hooks` (e.g. the
    circuit alone) and `calibration` when given."""
    device = next(model.parameters()).device
    b = batch.to(device)
    n = len(b)
    parts = [(rows, b.select(rows)) for rows in length_buckets(b.lengths)]
    streams = [_streams_entering_blocks(model, part, base_hooks) for _, part in parts]
    out: list[dict[str, Any]] = [{} for _ in edits]
    by_layer = sorted(range(len(edits)), key=lambda i: _layer(edits[i][0]))
    for layer, members in groupby(by_layer, key=lambda i: _layer(edits[i][0])):
        members = list(members)
        for start in range(0, len(members), group):
            chunk = members[start : start + group]
            copies = len(chunk)
            last = None
            for (rows, part), stream in zip(parts, streams, strict=True):
                m = len(part)
                hooks = compose(base_hooks, grouped_set_hooks([edits[i] for i in chunk], m))
                logits = model(
                    part.tokens.repeat(copies, 1),  # [copies * m, T]
                    hooks,
                    read_positions=(part.lengths - 1).repeat(copies),  # only the choice
                    from_layer=layer,
                    resid=stream[layer].repeat(copies, 1, 1) if layer > 0 else None,
                ).float()  # [copies * m, vocab]
                if last is None:
                    last = logits.new_empty(copies, n, logits.shape[-1])
                last[:, rows] = logits.view(copies, m, -1)
            for g, i in enumerate(chunk):
                out[i] = score_logits(last[g], b, calibration)
    return out


def length_buckets(lengths: Tensor, min_rows: int = 8, most: int = 4) -> list[Tensor]:
    """The rows in up to `most` groups of similar length (each at least `min_rows` long, by
    rank), so a group is padded to its own longest row, not the batch's: the work of a
    forward grows with the padded length (attention with its square)."""
    order = lengths.argsort(stable=True)
    k = max(1, min(most, len(order) // min_rows))
    return [rows for rows in order.tensor_split(k) if len(rows)]


def _layer(location: str) -> int:
    return int(location.split(".", 1)[0])


def _streams_entering_blocks(
    model: GPT, b: TaskBatch, base_hooks: Mapping[str, Hook] | None
) -> dict[int, Tensor]:
    """Layer -> the residual stream [n, T, d_model] entering that block (layers >= 1), on
    top of `base_hooks`: an edit in layer L leaves everything below it as it is here."""
    points = [f"{layer}.resid_pre" for layer in range(1, model.cfg.n_layer)]
    rec = Recorder(points)
    model(b.tokens, compose(base_hooks, rec.hooks), read_positions=b.lengths - 1)
    return {layer: rec.acts[f"{layer}.resid_pre"] for layer in range(1, model.cfg.n_layer)}
