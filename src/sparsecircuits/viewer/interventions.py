"""Live interventions on nodes: ablate (mean / zero), clamp or scale, then re-score the task.

An intervention list `[{"node": "0.mlp.post_act.460", "op": "scale", "value": -1}, ...]`
becomes one hook map (`model.hooks.set_nodes` / `scale_nodes`) that applies at every token
position; `compare` runs the task examples through the model with and without it and returns
the task metrics and each example's p(correct), p(wrong) both ways. In circuit mode both runs
are of the circuit alone (`circuit_hooks`: every other node at its ablation value, logits
calibrated as the pruner did), so an ablation shows what a node does inside the circuit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook, compose, parse_node, scale_nodes, set_nodes
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
    """The circuit alone: every node not in `nodes` replaced by its ablation value, at every
    location and position (the pruner's view of a circuit; `values[location]` is [width])."""
    keep = {loc: torch.zeros(w, dtype=torch.bool) for loc, w in model.location_width.items()}
    for node in nodes:
        location, index = check_node(model, node)
        keep[location][index] = True

    def make(mask: Tensor, value: Tensor) -> Hook:
        def hook(x: Tensor) -> Tensor:
            return torch.where(mask.to(x.device), x, value.to(x))

        return hook

    return {loc: make(keep[loc], values[loc].float()) for loc in model.locations}


def calibrate(last: Tensor, batch: TaskBatch, scale: float, shift: float) -> Tensor:
    """The pruner's calibration: scale * logits, + shift on each row's two candidate logits."""
    ids = torch.stack([batch.correct_id, batch.wrong_id], 1).to(last.device)  # [N, 2]
    bump = torch.zeros_like(last).scatter(1, ids, 1.0)  # [N, V]
    return last * scale + shift * bump


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
    if calibration is not None:
        last = calibrate(last, b, *calibration)
    probs = choice_logits(last.softmax(-1), b)  # [N, 2]
    return {
        "task_loss": float(task_loss(last, b)),
        "two_way_loss": float(two_way_loss(last, b)),
        "accuracy": float(accuracy(last, b)),
        "p_correct": [float(f"{p:.4g}") for p in probs[:, 0].tolist()],
        "p_wrong": [float(f"{p:.4g}") for p in probs[:, 1].tolist()],
    }


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
