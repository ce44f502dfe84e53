"""Many single-node edits scored at once: the report's table of every node's ablations.

Scoring one edit is one forward of the task's examples, and the report of a 175-node circuit
asks for 700 of them (mean and zero ablation, in the full model and in the circuit alone).
The forwards are arithmetic-bound, so the saving is in not repeating work:

- Edits are grouped by the half-block they edit (a layer's attention or its MLP). The
  residual stream entering each half is recorded once (`_streams_entering_parts`), and a
  group's forward starts there (`_forward_packed`): an edit in the last MLP costs almost
  nothing, one in the first attention three and a half blocks, not four.
- Rows that share a prefix (a contrast pair differs in one token near its end) are packed
  into one sequence whose prefix is computed once (`viewer/packing.py`): about half the
  positions on such a task. Packings of similar length run apart, each padded to its own
  longest (right padding is exact for a causal model).
- The last block works at the read position only, but for its attention's keys and values:
  its queries, its MLP and everything after it see one position at a time.
- `group` edits share one forward: the batch is repeated once per edit and a hook per location
  sets node i_g in copy g only (`grouped_set_hooks`).
- Only the choice position's logits are computed; all copies are scored at once by
  `interventions.score_logits_many` (per copy, the numbers `interventions.score_logits`
  gives a lone batch).
- The forwards run under `torch.inference_mode`; AbsTopK there is the C++ kernel wherever
  the model selects it (`model.kernels`, docs/sparse-kernels.md).
Each edit's numbers are those of a plain forward with the edit as a hook, up to float
rounding (tests/viewer/test_sweep.py compares them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from itertools import groupby
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.model.gpt import GPT, Attention
from sparsecircuits.model.hooks import Hook, Recorder, apply_hook, compose
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.interventions import score_logits_many
from sparsecircuits.viewer.packing import Packing, pack

GROUP = 16
"""Edits per forward: 16 copies of a packing's rows."""


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
    circuit alone; like every node hook here they must treat each position alike) and
    `calibration` when given.

    `fixed_parts`: half-blocks ((layer, part) as `_start`) whose output `base_hooks` make
    independent of their input (`fixed_circuit_parts`): where no edit is inside one, the
    residual delta it wrote in the unedited run is added instead of running it.
    """
    device = next(model.parameters()).device
    b = batch.to(device)
    n = len(b)
    streams = _streams_entering_parts(model, b, base_hooks, fixed_parts)
    read_tokens = b.tokens[torch.arange(n, device=device), b.lengths - 1]  # [n]
    # Each packing's streams, fixed deltas and read tokens, gathered once.
    packed = [(pk, {key: pk.gather(t) for key, t in streams.items()}, read_tokens[pk.rows])
              for pk in pack(b.tokens, b.lengths)]
    out: list[dict[str, Any]] = [{} for _ in edits]
    by_start = sorted(range(len(edits)), key=lambda i: _start(edits[i][0]))
    for start, members in groupby(by_start, key=lambda i: _start(edits[i][0])):
        members = list(members)
        for first in range(0, len(members), group):
            chunk = members[first : first + group]
            copies = len(chunk)
            last = None
            for pk, stream, tokens in packed:
                hooks = compose(base_hooks, grouped_set_hooks([edits[i] for i in chunk],
                                                              len(pk.queries)))
                fixed = {key: t for key, t in stream.items()
                         if key[0] == "delta" and key[1:] > start}
                logits = _forward_packed(
                    model, pk, hooks, start, stream[start].repeat(copies, 1, 1), fixed,
                    tokens.repeat(copies),
                ).float()  # [copies * rows, vocab]
                if last is None:
                    last = logits.new_empty(copies, n, logits.shape[-1])
                last[:, pk.rows] = logits.view(copies, len(pk.rows), -1)
            for i, scored in zip(chunk, score_logits_many(last, b, calibration), strict=True):
                out[i] = scored
    return out


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


def _forward_packed(
    model: GPT, pk: Packing, hooks: Mapping[str, Hook], start: tuple[int, int], x: Tensor,
    fixed: Mapping[Any, Tensor], tokens: Tensor,
) -> Tensor:  # fmt: skip
    """Logits [copies * n, vocab] at the read positions of the n rows of packing `pk`:
    `GPT.forward` with `hooks`, run from `start` ((layer, part), see `_start`) on the packed
    residual stream x [copies * G, Tp, d_model] entering it. `fixed`: ("delta", layer, part)
    -> what that later half-block adds to the stream whatever its input, packed
    [G, Tp, d_model]. `tokens` [copies * n]: the read tokens (for the bigram table)."""
    layer, part = start
    final = len(model.blocks) - 1
    copies = len(x) // len(pk.queries)

    def fixed_delta(index: int, p: int, read: bool) -> Tensor | None:
        delta = fixed.get(("delta", index, p))
        if delta is None:
            return None
        delta = delta.repeat(copies, 1, 1)  # [B, Tp, d_model]
        return pk.at_queries(delta) if read else delta

    for index in range(layer, final + 1):
        block = model.blocks[index]
        pre, mid, post = block.resid
        read = index == final  # the last block: only the read positions go on
        if index > layer or part == 0:  # as Block.forward
            x = apply_hook(hooks, pre, x)
            delta = fixed_delta(index, 0, read)
            if delta is None:
                delta = _attention(block.attn, x, hooks, pk, read)
            x = apply_hook(hooks, mid, (pk.at_queries(x) if read else x) + delta)
        elif read:  # the edit is in the last MLP
            x = pk.at_queries(x)
        delta = fixed_delta(index, 1, read)
        x = apply_hook(hooks, post, x + (block.mlp(x, hooks) if delta is None else delta))
    x = pk.per_row(x)[:, None]  # [copies * n, 1, d_model]
    # The model's own head (final hook, norm, unembedding, bias, bigram) on the one position.
    return model(tokens[:, None], hooks, read_positions=torch.zeros_like(tokens),
                 from_layer=final + 1, resid=x)


def _attention(
    attn: Attention, x: Tensor, hooks: Mapping[str, Hook], pk: Packing, read: bool
) -> Tensor:
    """`Attention.forward` on packed rows x [copies * G, Tp, d_model], the packing's mask in
    place of the causal one; with `read`, the queries (and all after them) at the read
    positions only: [B, M, d_model] (keys and values still at every position)."""
    B, T, _ = x.shape
    H, dh, G = attn.n_heads, attn.d_head, len(pk.queries)
    s = attn.sites
    a = s["act_in"](attn.norm(x), hooks)  # [B, T, d_model]
    q = s["q"](attn.q_proj(pk.at_queries(a) if read else a), hooks)  # [B, Tq, H * dh]
    k = s["k"](attn.k_proj(a), hooks)
    v = s["v"](attn.v_proj(a), hooks)
    Tq = q.shape[1]
    q = q.view(B, Tq, H, dh).transpose(1, 2)  # [B, H, Tq, dh]
    k, v = (t.view(B, T, H, dh).transpose(1, 2) for t in (k, v))  # [B, H, T, dh]
    bias = pk.query_bias if read else pk.bias  # [G, 1, Tq, T]
    # Written out rather than scaled_dot_product_attention: its masked path checks every
    # row for all -inf (a third of its time here); its scale is the same 1 / sqrt(d_head).
    scores = (q @ k.transpose(-1, -2)) * dh**-0.5  # [B, H, Tq, T]
    scores = (scores.view(B // G, G, H, Tq, T) + bias).view(B, H, Tq, T)
    if attn.sink is not None:  # as Attention.forward: one more key, logit `sink`, value zero
        scores = torch.cat([scores, attn.sink.view(1, H, 1, 1).expand(B, H, Tq, 1)], -1)
        v = torch.cat([v, v.new_zeros(B, H, 1, dh)], 2)
    heads = scores.softmax(-1) @ v  # [B, H, Tq, dh]
    return s["resid_delta"](attn.out_proj(heads.transpose(1, 2).reshape(B, Tq, H * dh)), hooks)
