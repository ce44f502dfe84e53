"""The JSON documents the front end renders, built the same way for the app and the report."""

from __future__ import annotations

from typing import Any

import torch

from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.viewer.circuit_file import CircuitFile
from sparsecircuits.viewer.graph import circuit_summary, graph_payload, node_info
from sparsecircuits.viewer.interventions import Intervention, circuit_hooks, compare
from sparsecircuits.viewer.node_stats import (
    check_node,
    corpus_stats,
    logit_effect,
    task_activations,
)
from sparsecircuits.viewer.workspace import ModelHandle


def node_panel(
    handle: ModelHandle,
    node: str,
    task: str | None = None,
    n: int = 32,
    circuit: CircuitFile | None = None,
) -> dict[str, Any]:
    """Everything the node panel shows about one node."""
    info = node_info(handle.model, node)  # validates the node
    location, index = info["location"], info["index"]
    means, mean_source = handle.means(circuit)
    panel: dict[str, Any] = {
        **info,
        "model": handle.ref,
        "corpus": corpus_stats(handle.corpus, handle.strings, location, index),
        "ablation_mean": float(f"{float(means[location][index]):.5g}"),
        "ablation_mean_source": mean_source,
        "task": None,
        "task_error": None,
        "circuit_meta": circuit.node_meta.get(node) if circuit is not None else None,
    }
    candidates: list[int] = []
    if task:
        try:
            batch, class_names = handle.task_batch(task, n)
        except TaskError as exc:
            panel["task_error"] = str(exc)
        else:
            panel["task"] = {
                "name": task,
                **task_activations(handle.model, batch, class_names, handle.strings,
                                   location, index),
            }
            candidates = sorted(set(batch.correct_id.tolist()) | set(batch.wrong_id.tolist()))[:4]
    panel["logit_effect"] = logit_effect(handle.model, handle.strings, location, index,
                                         candidates=candidates)
    return panel


def circuit_view(
    handle: ModelHandle, circuit: CircuitFile, ref: str, n: int = 32, warnings: list[str] = ()
) -> dict[str, Any]:
    """The circuit header and graph."""
    warnings = list(warnings)
    try:
        batch, class_names = handle.task_batch(circuit.task, n)
    except TaskError as exc:
        batch, class_names = None, ("class 0", "class 1")
        warnings.append(f"task examples unavailable: {exc}")
    graph = graph_payload(circuit, handle.model, handle.strings, batch)
    if graph["unknown_nodes"]:
        warnings.append(
            f"{len(graph['unknown_nodes'])} node(s) do not exist in this model and are not "
            f"drawn: {', '.join(graph['unknown_nodes'][:5])}"
        )
    return {
        "circuit": circuit_summary(circuit, ref),
        "model": handle.ref,
        "class_names": list(class_names),
        "graph": graph,
        "warnings": warnings,
    }


def task_examples(handle: ModelHandle, task: str, n: int) -> list[dict[str, Any]]:
    """Short descriptions of the examples interventions are scored on (for the results table)."""
    batch, class_names = handle.task_batch(task, n)
    out = []
    for i in range(len(batch)):
        length = int(batch.lengths[i])
        tail = "".join(handle.strings[t] for t in batch.tokens[i, max(0, length - 12) : length])
        out.append({
            "label": int(batch.label[i]),
            "class": class_names[int(batch.label[i])],
            "tail": tail,
            "correct": handle.strings[int(batch.correct_id[i])],
            "wrong": handle.strings[int(batch.wrong_id[i])],
        })
    return out


MODES = ("model", "circuit")


def intervention_result(
    handle: ModelHandle,
    task: str,
    interventions: list[Intervention],
    n: int = 32,
    circuit: CircuitFile | None = None,
    mode: str = "model",
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Baseline vs intervened metrics and per-example probabilities on the task's val examples.

    mode 'model': the full model; 'circuit': the circuit alone, every other node at its
    ablation value and the logits calibrated, as the pruner evaluates it. A `baseline` from an
    earlier call with the same task, n, circuit and mode is reused (and no examples are added).
    """
    if mode not in MODES:
        raise SparseCircuitsError(f"unknown mode {mode!r}; use model or circuit")
    batch, _ = handle.task_batch(task, n)
    means = source = base = calibration = None
    if any(iv.op == "ablate_mean" for iv in interventions):
        means, source = handle.means(circuit)
    if mode == "circuit":
        base, calibration, source = _circuit_base(handle, circuit, means, source)
    result = compare(handle.model, batch, interventions, means, base, calibration, baseline)
    result.update(task=task, n=len(batch), mean_source=source, mode=mode)
    if baseline is None:
        result["examples"] = task_examples(handle, task, n)
    return result


def _circuit_base(handle, circuit, means, source):
    """Hooks that run the circuit alone, its calibration, and where the ablation values are from."""
    if circuit is None:
        raise SparseCircuitsError("circuit mode needs a circuit")
    kind = circuit.ablation or "mean"
    if kind == "mean":
        values, where = (means, source) if means is not None else handle.means(circuit)
    elif kind == "zero":
        values = {loc: torch.zeros(w) for loc, w in handle.model.location_width.items()}
        where = source
    else:
        raise SparseCircuitsError(f"circuit mode supports mean and zero ablation, not {kind!r}")
    hooks = circuit_hooks(handle.model, [n for n in circuit.nodes if _exists(handle, n)], values)
    return hooks, circuit.calibration, where


def _exists(handle: ModelHandle, node: str) -> bool:
    try:
        check_node(handle.model, node)
    except SparseCircuitsError:
        return False
    return True
