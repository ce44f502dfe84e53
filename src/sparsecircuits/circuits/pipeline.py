"""End to end: a checkpoint and a task in, a validated circuit (circuit.json) out.

    ctx = CircuitContext(load_checkpoint("runs/demo"), PruneConfig())
    circuit, tensors = find_circuit(ctx, "single_double_quote")
    circuit.save("circuits/demo/single_double_quote", tensors)

find_circuit runs:
    1. task splits, checked against the checkpoint's tokenizer
    2. ablation values (mean: cached per checkpoint content hash)
    3. mask training on train, search on k on val, calibration        (pruner.py)
       (or an Optuna search over hyperparameters, search.py)
    4. edges                                                            (graph.py)
    5. sufficiency + necessity on test, controls                        (validate.py)
    6. gradient-attribution baseline with the same search              (attribution.py)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from sparsecircuits.checkpoint import Loaded, content_hash
from sparsecircuits.circuits.ablation import Ablation, PretrainingWindows, build_ablation
from sparsecircuits.circuits.circuit_file import Circuit
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.graph import CircuitGraph, circuit_graph
from sparsecircuits.circuits.pruner import PruneOutcome, Pruner
from sparsecircuits.circuits.search import search_hyperparameters
from sparsecircuits.circuits.task_data import TaskData, load_task_data
from sparsecircuits.circuits.validate import (
    control_nonsense_task,
    control_random_weights,
    sufficiency_necessity,
)
from sparsecircuits.model.locations import node_kind, parse_node
from sparsecircuits.tasks.base import Task


class CircuitContext:
    """What every task pruned in one checkpoint shares: model hash, windows, ablation."""

    def __init__(self, loaded: Loaded, cfg: PruneConfig, cache_dir: Path | None = None):
        self.loaded = loaded
        self.cfg = cfg
        self.cache_dir = cache_dir
        # The hash of the bytes the model was loaded from, not of the file now: a training run
        # may have replaced the checkpoint since.
        self.hash = loaded.content_hash or content_hash(loaded.path)
        self.windows = PretrainingWindows(loaded, cfg.mean_windows)
        self._ablation: Ablation | None = None

    def ablation(self) -> Ablation:
        """The real model's ablation (built once; the resample bank covers n_ctx positions)."""
        if self._ablation is None:
            model = self.loaded.model
            self._ablation = build_ablation(
                self.cfg.ablation, model, self.windows, model.cfg.n_ctx, self.hash, self.cache_dir
            )
        return self._ablation

    def graph(self, nodes: list[str], data: TaskData) -> CircuitGraph:
        model = self.loaded.model
        return circuit_graph(
            model.state_dict(),
            model.cfg.n_layer,
            nodes,
            data.task_tokens,
            data.candidate_tokens,
            data.seq,
        )


def find_circuit(
    ctx: CircuitContext,
    task: Task | str,
    controls: bool = True,
    baseline: bool = True,
    search_trials: int = 0,
    progress: bool = False,
) -> tuple[Circuit, dict[str, Tensor]]:
    """Prune, discretise, calibrate, count edges and validate (see module docstring).

    Returns the circuit and its sidecar tensors; `Circuit.save(dir, tensors)` writes both.
    """
    t0 = time.perf_counter()
    loaded, cfg, model = ctx.loaded, ctx.cfg, ctx.loaded.model
    data = load_task_data(task, loaded.tokenizer, cfg, model.cfg.n_ctx)
    wall: dict[str, float] = {"load_task": time.perf_counter() - t0}

    t = time.perf_counter()
    ablation = ctx.ablation()
    wall["ablation_values"] = time.perf_counter() - t
    pruner = Pruner(model, ablation, cfg, progress)

    search_summary = None
    if search_trials:
        t = time.perf_counter()
        best_cfg, outcome, search_summary = search_hyperparameters(
            pruner, data, search_trials, lambda nodes: len(ctx.graph(nodes, data).edges), cfg.seed
        )
        pruner = Pruner(model, ablation, best_cfg, progress)
        wall["search"] = time.perf_counter() - t
    else:
        outcome = pruner.prune(data)
    wall.update({k: v for k, v in outcome.seconds.items() if k != "total"})

    t = time.perf_counter()
    graph = ctx.graph(outcome.nodes, data)
    wall["graph"] = time.perf_counter() - t

    t = time.perf_counter()
    validation = sufficiency_necessity(
        pruner, data, outcome.unit_gates, outcome.scale, outcome.shift
    )
    wall["sufficiency_necessity"] = time.perf_counter() - t
    validation["controls"] = []
    if controls:
        t = time.perf_counter()
        validation["controls"].append(
            control_random_weights(model, ctx.windows, data, pruner, cfg.seed)
        )
        wall["control_random_weights"] = time.perf_counter() - t
        t = time.perf_counter()
        validation["controls"].append(
            control_nonsense_task(pruner, data, loaded.tokenizer, cfg.seed)
        )
        wall["control_nonsense_task"] = time.perf_counter() - t

    baseline_doc = None
    tensors: dict[str, Tensor] = {
        "mask_scores": outcome.training.tau,
        "unit_gates": outcome.unit_gates,
        **ablation.tensors(),
    }
    if baseline:
        t = time.perf_counter()
        base = pruner.baseline(data, start_k=max(1, int(outcome.unit_gates.sum())))
        base_graph = ctx.graph(base.nodes, data)
        baseline_doc = {
            "method": "gradient attribution |(activation - ablation value) x gradient|",
            "reached_target": base.search.reached,
            "nodes": len(base.nodes),
            "edges": len(base_graph.edges),
            "edges_total": base_graph.counts()["edges_total"],
            "val_loss": base.search.loss,
            "k_search": [[k, v] for k, v in base.search.evaluations.items()],
        }
        tensors["attribution_scores"] = base.scores
        wall["baseline"] = time.perf_counter() - t
    wall["total"] = time.perf_counter() - t0

    run = TaskRun(
        data=data,
        pruner=pruner,
        outcome=outcome,
        graph=graph,
        validation=validation,
        baseline=baseline_doc,
        search=search_summary,
        wall_time_s=wall,
    )
    return _assemble(ctx, run), tensors


@dataclass(frozen=True)
class TaskRun:
    """What pruning one task produced, before it is written as a Circuit."""

    data: TaskData
    pruner: Pruner
    """The pruner that found the circuit (after a hyperparameter search: the best one's)."""
    outcome: PruneOutcome
    graph: CircuitGraph
    validation: dict[str, Any]
    """Sufficiency, necessity and the controls (validate.py)."""
    baseline: dict[str, Any] | None
    """The attribution baseline's summary; None when it was not run."""
    search: dict[str, Any] | None
    """The hyperparameter search's summary; None without a search."""
    wall_time_s: dict[str, float]
    """Seconds per stage."""


def _assemble(ctx: CircuitContext, run: TaskRun) -> Circuit:
    """The circuit.json document of one task's run."""
    data, pruner, outcome, graph, validation = (
        run.data, run.pruner, run.outcome, run.graph, run.validation
    )  # fmt: skip
    loaded, layout = ctx.loaded, pruner.layout
    tok = loaded.tokenizer
    tau = outcome.training.tau
    nodes = []
    for name in outcome.nodes:
        loc, index = parse_node(name)
        nodes.append(
            {
                "name": name,
                "location": loc,
                "index": index,
                "layer": int(loc.split(".")[0]),
                "kind": node_kind(loc),
                "mask_score": float(tau[layout.unit_of[loc][index]]),
                "ablation_value": pruner.ablation.node_value(loc, index),
            }
        )
    per_location: dict[str, int] = {}
    for n in nodes:
        per_location[n["location"]] = per_location.get(n["location"], 0) + 1
    counts = {
        "nodes": len(nodes),
        "units": int(outcome.unit_gates.sum()),
        **graph.counts(),
        "model_nodes": layout.n_nodes,
        "nodes_per_location": per_location,
    }
    full, suff = validation["full_model"], validation["sufficiency"]
    losses = {
        "full_model_val": outcome.full_val_loss,
        "full_model_test": full["loss"],
        "val_before_calibration": outcome.val_loss_before,
        "val_after_calibration": outcome.val_loss_after,
        "test_sufficiency": suff["loss"],
        "test_sufficiency_uncalibrated": validation["sufficiency_uncalibrated"]["loss"],
        "test_necessity": validation["necessity"]["loss"],
        "test_all_ablated": validation["all_ablated"]["loss"],
    }
    training = outcome.training
    curve_every = max(1, len(training.task_loss) // 50)
    model_meta = {
        "path": str(loaded.path),
        "content_hash": ctx.hash,
        "step": loaded.meta.get("step"),
        "config": asdict(loaded.config.model),
    }
    task_doc = {
        "name": data.name,
        "description": data.description,
        "split_sizes": data.sizes,
        "seed": pruner.cfg.task_seed,
        "candidates": [{"id": i, "text": tok.decode([i])} for i in data.candidate_tokens],
        "n_truncated": sum(b.n_truncated for b in (data.train, data.val, data.test)),
    }
    return Circuit(
        model=model_meta,
        task=task_doc,
        ablation=pruner.cfg.ablation,
        target_loss=pruner.cfg.target_loss,
        nodes=nodes,
        edges=[list(e) for e in graph.edges],
        embed_edges=[list(e) for e in graph.embed_edges],
        unembed_edges=[list(e) for e in graph.unembed_edges],
        residual_links=[list(link) for link in graph.residual_links],
        counts=counts,
        losses=losses,
        calibration={
            "scale": outcome.scale,
            "shift": outcome.shift,
            "shift_applies_to": "both candidate logits of each example",
        },
        validation=validation,
        baseline=run.baseline,
        search=run.search,
        hyperparameters=pruner.cfg.to_dict(),
        training={
            "steps": len(training.task_loss),
            "steps_per_s": training.steps_per_s,
            "task_loss_curve": training.task_loss[::curve_every],
            "kept_nodes_curve": training.kept_nodes[::curve_every],
            "curve_every": curve_every,
            "k_search": [[k, v] for k, v in outcome.search.evaluations.items()],
        },
        wall_time_s=run.wall_time_s,
    )


def geometric_mean(values: list[int]) -> float:
    """exp(mean(log(v))) with 0 counted as 1 (a circuit without edges), NaN for no values."""
    if not values:
        return math.nan
    return math.exp(sum(math.log(max(v, 1)) for v in values) / len(values))


def summary_row(circuit: Circuit) -> dict[str, Any]:
    """The per-task line of `prune --all-tasks`."""
    c, losses, v = circuit.counts, circuit.losses, circuit.validation
    return {
        "task": circuit.task["name"],
        "nodes": c["nodes"],
        "edges": c["edges"],
        "edges_total": c["edges_total"],
        "full_val": losses["full_model_val"],
        "val": losses["val_before_calibration"],
        "val_cal": losses["val_after_calibration"],
        "test": losses["test_sufficiency"],
        "necessity": losses["test_necessity"],
        "necessity_fraction": v.get("necessity_fraction"),
    }
