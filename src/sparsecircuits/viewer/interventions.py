"""Live interventions on nodes: ablate (mean / zero), clamp or scale, then re-score the task.

An intervention list `[{"node": "0.mlp.post_act.460", "op": "scale", "value": -1}, ...]`
becomes one hook map (`model.hooks.set_nodes` / `scale_nodes`) that applies at every token
position; `compare` runs the task examples through the model with and without it and returns
the task metrics and each example's p(correct), p(wrong) both ways. In circuit mode both runs
are of the circuit alone, with the pruner's own mechanisms (`masks.masked_hooks`: every other
node at its ablation value; `discretize.calibrate_logits`: the circuit's logit calibration), so
an ablation shows what a node does inside the circuit and the baseline is the pruner's number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.circuits.discretize import calibrate_logits
from sparsecircuits.circuits.masks import MaskLayout
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.fileformat import strict_json_value
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook, compose, scale_nodes, set_nodes
from sparsecircuits.model.locations import parse_node
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.tasks.metrics import (
    accuracy,
    choice_logits,
    last_position_logits,
    task_loss,
    two_way_loss,
)
from sparsecircuits.viewer.node_stats import check_node

OPS = ("ablate_mean", "ablate_zero", "clamp", "scale")
MAX_INTERVENTIONS = 64
MAX_ABS_VALUE = 1e6


@dataclass(frozen=True)
class Intervention:
    """One edit of one node at every position."""

    node: str
    """Node name, e.g. `0.mlp.post_act.460`."""
    op: str
    """'ablate_mean', 'ablate_zero', 'clamp' (set to value) or 'scale' (multiply by value)."""
    value: float | None = None
    """The clamp value or scale factor (unused by the ablations)."""

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "value": self.value}


def parse_interventions(items: Sequence[Any], model: GPT) -> list[Intervention]:
    """Validate raw dicts against the model; SparseCircuitsError naming the first bad one."""
    if not isinstance(items, (list, tuple)):
        raise SparseCircuitsError("interventions must be a list")
    if len(items) > MAX_INTERVENTIONS:
        raise SparseCircuitsError(f"at most {MAX_INTERVENTIONS} interventions at once")
    out = []
    for item in items:
        if isinstance(item, Intervention):
            item = item.to_dict()
        if not isinstance(item, Mapping):
            raise SparseCircuitsError(f"an intervention must be an object, got {item!r:.60}")
        node, op, value = item.get("node"), item.get("op"), item.get("value")
        if not isinstance(node, str):
            raise SparseCircuitsError("an intervention needs a node name")
        check_node(model, node)
        if op not in OPS:
            raise SparseCircuitsError(f"unknown op {op!r}; use one of {', '.join(OPS)}")
        if op in ("clamp", "scale"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SparseCircuitsError(f"{op} of {node} needs a numeric value")
            if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
                raise SparseCircuitsError(f"{op} value for {node} must be finite and < 1e6")
            value = float(value)
        else:
            value = None
        out.append(Intervention(node, op, value))
    return out


def build_hooks(
    interventions: Sequence[Intervention], means: Mapping[str, Tensor] | None = None
) -> dict[str, Hook]:
    """One hook map: fixed values (ablations, clamps) first, then scales, per location."""
    fixed: dict[str, dict[int, float]] = {}
    factors: dict[str, dict[int, float]] = {}
    for iv in interventions:
        location, index = parse_node(iv.node)
        if iv.op == "ablate_mean":
            if means is None or location not in means:
                raise SparseCircuitsError(f"no mean activation known for {location}")
            fixed.setdefault(location, {})[index] = float(means[location][index])
        elif iv.op == "ablate_zero":
            fixed.setdefault(location, {})[index] = 0.0
        elif iv.op == "clamp":
            fixed.setdefault(location, {})[index] = float(iv.value)
        else:
            factors.setdefault(location, {})[index] = (
                factors.get(location, {}).get(index, 1.0) * float(iv.value)
            )
    return compose(set_nodes(fixed), scale_nodes(factors))


def needs_means(interventions: Sequence[Intervention]) -> bool:
    return any(iv.op == "ablate_mean" for iv in interventions)


def circuit_hooks(
    model: GPT, nodes: Sequence[str], values: Mapping[str, Tensor]
) -> dict[str, Hook]:
    """The circuit alone, as the pruner runs it (`masks.masked_hooks`, the same units): every
    node not in `nodes` replaced by its ablation value `values[location]` ([width]) at every
    position."""
    for node in nodes:
        check_node(model, node)  # a clear error for a node the model lacks
    layout = MaskLayout.for_model(model)
    gates = layout.node_gates(layout.unit_gates_for_nodes(nodes))  # 0/1 per node
    hooks: dict[str, Hook] = {}
    for loc, g in gates.items():
        if bool((g == 1).all()):
            continue  # as masked_hooks: the whole location is kept

        # The pruner's a + g * (x - a) with 0/1 gates, as one pass over the activation
        # instead of three (the report runs this hook in hundreds of forwards); a kept node
        # keeps its exact value rather than a + (x - a).
        def hook(x: Tensor, keep: Tensor = g > 0, a: Tensor = values[loc]) -> Tensor:
            return torch.where(keep.to(x.device), x, a.to(x))

        hooks[loc] = hook
    return hooks


@torch.no_grad()
def score(
    model: GPT,
    batch: TaskBatch,
    hooks: Mapping[str, Hook] | None,
    calibration: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Task metrics and per-example p(correct), p(wrong) (softmax over the whole vocab)."""
    device = next(model.parameters()).device
    b = batch.to(device)
    last = last_position_logits(model(b.tokens, hooks), b.lengths).float()  # [N, V]
    return score_logits(last, b, calibration)


def score_logits(
    last: Tensor, b: TaskBatch, calibration: tuple[float, float] | None = None
) -> dict[str, Any]:
    """`score` from the logits at the choice positions, last [N, vocab], of batch `b` (on the
    logits' device)."""
    if calibration is not None:
        last = calibrate_logits(last, b, *calibration)
    probs = choice_logits(last.softmax(-1), b)  # [N, 2]
    # An extreme clamp or calibration can overflow: such a number is shown as null (JSON has no
    # NaN), not a failed request.
    return strict_json_value({
        "task_loss": float(task_loss(last, b)),
        "two_way_loss": float(two_way_loss(last, b)),
        "accuracy": float(accuracy(last, b)),
        "p_correct": [float(f"{p:.4g}") for p in probs[:, 0].tolist()],
        "p_wrong": [float(f"{p:.4g}") for p in probs[:, 1].tolist()],
    })


def score_logits_many(
    last: Tensor, b: TaskBatch, calibration: tuple[float, float] | None = None
) -> list[dict[str, Any]]:
    """`score_logits` of each last[g], last [G, N, vocab], from one pass over all of them (the
    sweep scores hundreds of edits: a few large operations instead of many small ones)."""
    G, N, V = last.shape
    correct = b.correct_id.to(last.device).repeat(G)  # [G * N]
    wrong = b.wrong_id.to(last.device).repeat(G)
    flat = last.reshape(G * N, V).float()
    if calibration is not None:
        flat = calibrate_logits(flat, _Candidates(correct, wrong), *calibration)
    logp = flat.log_softmax(-1)  # [G * N, V]
    rows = torch.arange(G * N, device=last.device)
    lp_correct, lp_wrong = logp[rows, correct], logp[rows, wrong]  # [G * N]
    l_correct, l_wrong = flat[rows, correct], flat[rows, wrong]
    per_row = torch.stack([
        -lp_correct,  # task_loss: cross entropy over the whole vocabulary
        torch.nn.functional.softplus(l_wrong - l_correct),  # two_way_loss
        (l_correct > l_wrong).float() + 0.5 * (l_correct == l_wrong).float(),  # accuracy
    ]).view(3, G, N)
    means = per_row.double().mean(-1).tolist()  # [3][G]
    p_correct = lp_correct.exp().view(G, N).tolist()
    p_wrong = lp_wrong.exp().view(G, N).tolist()
    return [
        strict_json_value({
            "task_loss": means[0][g],
            "two_way_loss": means[1][g],
            "accuracy": means[2][g],
            "p_correct": [float(f"{p:.4g}") for p in p_correct[g]],
            "p_wrong": [float(f"{p:.4g}") for p in p_wrong[g]],
        })
        for g in range(G)
    ]


@dataclass(frozen=True)
class _Candidates:
    """The candidate ids of G copies of a batch (what `calibrate_logits` reads)."""

    correct_id: Tensor
    wrong_id: Tensor


def compare(
    model: GPT,
    batch: TaskBatch,
    interventions: Sequence[Intervention],
    means: Mapping[str, Tensor] | None = None,
    base_hooks: Mapping[str, Hook] | None = None,
    calibration: tuple[float, float] | None = None,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The task scored without and with the interventions, both on top of `base_hooks` (e.g.
    `circuit_hooks`) and `calibration` when given; `baseline`, when the caller already has it
    (many single-node ablations against one baseline), is not computed again."""
    hooks = build_hooks(interventions, means)
    return {
        "interventions": [iv.to_dict() for iv in interventions],
        "baseline": baseline or score(model, batch, base_hooks, calibration),
        "intervened": score(model, batch, compose(base_hooks, hooks), calibration),
    }
