"""Many single-node edits scored at once: the report's table of every node's ablations.

Scoring one edit is one forward of the task's examples, and the report of a 175-node circuit
asks for 700 of them (mean and zero ablation, in the full model and in the circuit alone).
The forwards are arithmetic-bound, so the saving is in not repeating work:

- Edits are grouped by the half-block they edit (a layer's attention or its MLP). The
  residual stream entering each half is recorded once (`_streams_entering_parts`), and a
  group's forward starts there (`_forward_from`): an edit in the last MLP costs almost
  nothing, one in the first attention three and a half blocks, not four.
- The last block's MLP and everything after it act on each position alone, and only the
  choice position is read: they run at that position only.
- `group` edits share one forward: the batch is repeated once per edit and a hook per location
  sets node i_g in copy g only (`grouped_set_hooks`).
- Rows are split into a few groups of similar length (`length_buckets`), each padded only to
  its own longest row: right padding is exact for a causal model, so this changes no number.
- Only the choice position's logits are computed (`GPT.forward`'s `read_positions`); all
  copies are scored at once by `interventions.score_logits_many` (per copy, the numbers
  `interventions.score_logits` gives a lone batch).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from itertools import groupby
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook, Recorder, apply_hook, compose
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.interventions import score_logits_many

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


@torch.inference_mode()  # no autograd bookkeeping at all: nothing here is trained
def score_edits(
    model: GPT,
    batch: TaskBatch,
    edits: Sequence[tuple[str, int, float]],
    base_hooks: Mapping[str, Hook] | None = None,
    calibration: tuple[float, float] | None = None,
    group: int = GROUP,
    fixed_parts: Collection[tuple[int, int]] = (),
) -> list[dict[str, Any]]:
    """For each (location, index, value), in order: the task scored (`score_logits`) with
    that one node set to the value at every position, on top of `base_hooks` (e.g. the
    circuit alone) and `calibration` when given.

    `fixed_parts`: half-blocks ((layer, part) as `_start`) whose output `base_hooks` make
    independent of their input (`fixed_circuit_parts`): where no edit is inside one, the
    residual delta it wrote in the unedited run is added instead of running it.
    """
    device = next(model.parameters()).device
    b = batch.to(device)
    n = len(b)
    parts = [(rows, b.select(rows)) for rows in length_buckets(b.lengths)]
    streams = [_streams_entering_parts(model, part, base_hooks, fixed_parts) for _, part in parts]
    out: list[dict[str, Any]] = [{} for _ in edits]
    by_start = sorted(range(len(edits)), key=lambda i: _start(edits[i][0]))
    for start, members in groupby(by_start, key=lambda i: _start(edits[i][0])):
        members = list(members)
        for first in range(0, len(members), group):
            chunk = members[first : first + group]
            copies = len(chunk)
            last = None
            for (rows, part), stream in zip(parts, streams, strict=True):
                m = len(part)
                hooks = compose(base_hooks, grouped_set_hooks([edits[i] for i in chunk], m))
                logits = _forward_from(
                    model,
                    part.tokens.repeat(copies, 1),  # [copies * m, T]
                    hooks,
                    (part.lengths - 1).repeat(copies),  # only the choice is read
                    start,
                    stream[start].repeat(copies, 1, 1),
                    {("delta", *k): stream[("delta", *k)] for k in fixed_parts if k > start},
                ).float()  # [copies * m, vocab]
                if last is None:
                    last = logits.new_empty(copies, n, logits.shape[-1])
                last[:, rows] = logits.view(copies, m, -1)
            for i, scored in zip(chunk, score_logits_many(last, b, calibration), strict=True):
                out[i] = scored
    return out


def length_buckets(lengths: Tensor, min_rows: int = 8, most: int = 4) -> list[Tensor]:
    """The rows in up to `most` groups of similar length (each at least `min_rows` long, by
    rank), so a group is padded to its own longest row, not the batch's: the work of a
    forward grows with the padded length (attention with its square)."""
    order = lengths.argsort(stable=True)
    k = max(1, min(most, len(order) // min_rows))
    return [rows for rows in order.tensor_split(k) if len(rows)]


PARTS = ("attn", "mlp")


def _start(location: str) -> tuple[int, int]:
    """(layer, 0 for its attention or 1 for its MLP) of a node location, in forward order."""
    layer, part, _ = location.split(".", 2)
    return int(layer), PARTS.index(part)


def fixed_circuit_parts(model: GPT, kept: Collection[str]) -> set[tuple[int, int]]:
    """Half-blocks ((layer, part) as `_start`) that compute a fixed function of position
    when only the nodes `kept` are (every other one set to its ablation value): those whose
    input nodes (`act_in`) are all ablated. From a fixed input, an MLP gives a constant and
    attention (every key and value the same) an output that depends on the position only."""
    reading = {name.rsplit(".", 1)[0] for name in kept}
    return {
        _start(loc) for loc in model.location_width
        if loc.endswith(".act_in") and loc not in reading
    }


def _streams_entering_parts(
    model: GPT, b: TaskBatch, base_hooks: Mapping[str, Hook] | None,
    fixed_parts: Collection[tuple[int, int]] = (),
) -> dict[Any, Tensor]:  # fmt: skip
    """(layer, part) -> the residual stream [n, T, d_model] entering that layer's attention
    (its `resid_pre`) or MLP (its `resid_mid`), on top of `base_hooks` (node locations only):
    an edit there leaves everything before it as it is here. For each (layer, part) of
    `fixed_parts` also ("delta", layer, part) -> what it adds to the stream."""
    if base_hooks and not set(base_hooks) <= set(model.location_width):
        raise ValueError("base hooks must be at node locations (they would apply twice)")
    points: dict[Any, str] = {
        (layer, p): f"{layer}.resid_{name}"
        for layer in range(model.cfg.n_layer) for p, name in enumerate(("pre", "mid"))
    }
    for layer, p in fixed_parts:  # the delta after its hooks (the recorder runs after them)
        points[("delta", layer, p)] = f"{layer}.{PARTS[p]}.resid_delta"
    rec = Recorder(list(points.values()))
    model(b.tokens, compose(base_hooks, rec.hooks), read_positions=b.lengths - 1)
    return {key: rec.acts[point] for key, point in points.items()}


def _forward_from(
    model: GPT, tokens: Tensor, hooks: Mapping[str, Hook], read: Tensor,
    start: tuple[int, int], x: Tensor, fixed: Mapping[Any, Tensor] | None = None,
) -> Tensor:  # fmt: skip
    """Logits [B, vocab] at positions `read` ([B]) of tokens [B, T]: `GPT.forward` with
    `hooks` and `read_positions`, run from `start` ((layer, part), see `_start`) on the
    residual stream x [B, T, d_model] entering it (`_streams_entering_parts`). The last
    block's MLP runs at the read positions only (it, the final norm, the unembedding and the
    bigram table see one position at a time). `fixed`: ("delta", layer, part) -> what that
    later half-block adds to the stream whatever its input, [m, T, d_model] for the m rows
    that the B = copies * m rows repeat."""
    layer, part = start
    rows = torch.arange(len(tokens), device=tokens.device)
    final = len(model.blocks) - 1
    fixed = fixed or {}

    def run(index: int, p: int, x: Tensor, module) -> Tensor:
        delta = fixed.get(("delta", index, p))
        if delta is None:
            return module(x, hooks)
        copies = len(x) // len(delta)
        delta = delta.repeat(copies, 1, 1)  # [B, T, d_model]
        return delta if x.shape[1] == delta.shape[1] else delta[rows, read][:, None]

    for index in range(layer, final + 1):
        block = model.blocks[index]
        pre, mid, post = block.resid
        if index > layer or part == 0:  # as Block.forward
            x = apply_hook(hooks, pre, x)
            x = apply_hook(hooks, mid, x + run(index, 0, x, block.attn))
        if index == final:
            x = x[rows, read][:, None]  # [B, 1, d_model]
        x = apply_hook(hooks, post, x + run(index, 1, x, block.mlp))
    # The model's own head (final hook, norm, unembedding, bias, bigram) on the one position.
    return model(tokens[rows, read][:, None], hooks, read_positions=torch.zeros_like(read),
                 from_layer=final + 1, resid=x)
