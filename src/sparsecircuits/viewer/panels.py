"""The JSON documents the front end renders, built the same way for the app and the report.

The app asks for one node panel or one intervention at a time; the report asks for all of a
circuit's at once, and `node_panels` / `single_ablations` give it the same documents from a
few batched passes (one scan of the pretraining windows for every node, one forward of the
task's examples for every node's task activations, and the ablations grouped by
`sweep.score_edits`), instead of a forward per node and per ablation.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.viewer.circuit_adapter import ViewedCircuit
from sparsecircuits.viewer.graph import circuit_summary, graph_payload, node_info
from sparsecircuits.viewer.interventions import Intervention, circuit_hooks, compare
from sparsecircuits.viewer.node_stats import (
    check_node,
    corpus_stats,
    logit_effect,
    record_nodes,
    task_activations,
)
from sparsecircuits.viewer.sweep import fixed_circuit_parts, score_edits
from sparsecircuits.viewer.workspace import ModelHandle


def node_panel(
    handle: ModelHandle,
    node: str,
    task: str | None = None,
    n: int = 32,
    circuit: ViewedCircuit | None = None,
    task_acts: dict[tuple[str, int], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Everything the node panel shows about one node. `task_acts`: the node's activations
    on the task batch when already recorded (`node_panels`)."""
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
            acts = (task_acts or {}).get((location, index))
            panel["task"] = {
                "name": task,
                **task_activations(handle.model, batch, class_names, handle.strings,
                                   location, index, acts=acts),
            }
            candidates = sorted(set(batch.correct_id.tolist()) | set(batch.wrong_id.tolist()))[:4]
    panel["logit_effect"] = logit_effect(handle.model, handle.strings, location, index,
                                         candidates=candidates)
    return panel


def node_panels(
    handle: ModelHandle,
    nodes: list[str],
    task: str | None = None,
    n: int = 32,
    circuit: ViewedCircuit | None = None,
) -> dict[str, dict[str, Any]]:
    """`node_panel` of every node, from one scan of the pretraining windows and one forward of
    the task's examples for all of them."""
    located = [check_node(handle.model, node) for node in nodes]
    handle.corpus.preload(located)
    task_acts = None
    if task:
        try:
            batch, _ = handle.task_batch(task, n)
        except TaskError:
            pass  # each panel reports the error itself
        else:
            task_acts = record_nodes(handle.model, batch.tokens, located, len(batch))
    return {node: node_panel(handle, node, task, n, circuit, task_acts) for node in nodes}


ABLATIONS = ("ablate_mean", "ablate_zero")
"""The interventions the report precomputes for every node."""


def single_ablations(
    handle: ModelHandle,
    task: str,
    nodes: list[str],
    baseline: dict[str, Any],
    n: int = 32,
    circuit: ViewedCircuit | None = None,
    mode: str = "model",
) -> dict[str, dict[str, dict[str, Any]]]:
    """{node: {op: result}} for each node mean- and zero-ablated alone: the documents
    `intervention_result` returns for `[Intervention(node, op)]` with this `baseline` (the
    'baseline' entry of its result without interventions), scored in groups."""
    if mode not in MODES:
        raise SparseCircuitsError(f"unknown mode {mode!r}; use model or circuit")
    batch, _ = handle.task_batch(task, n)
    means, source = handle.means(circuit)
    base = calibration = None
    fixed: set[tuple[int, int]] = set()
    if mode == "circuit":
        base, calibration, source = _circuit_base(handle, circuit, means, source)
        # the circuit's half-blocks that read no kept node: the same whatever is ablated
        fixed = fixed_circuit_parts(handle.model, [n for n in circuit.nodes if _exists(handle, n)])
    edits, keys = [], []
    for node in nodes:
        location, index = check_node(handle.model, node)
        for op in ABLATIONS:
            value = float(means[location][index]) if op == "ablate_mean" else 0.0
            edits.append((location, index, value))
            keys.append((node, op))
    scores = score_edits(handle.model, batch, edits, base, calibration, fixed_parts=fixed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (node, op), intervened in zip(keys, scores, strict=True):
        out.setdefault(node, {})[op] = {
            "interventions": [Intervention(node, op).to_dict()],
            "baseline": baseline,
            "intervened": intervened,
            "task": task,
            "n": len(batch),
            # as intervention_result: a zero ablation in the full model uses no means
            "mean_source": source if mode == "circuit" or op == "ablate_mean" else None,
            "mode": mode,
        }
    return out


def circuit_view(
    handle: ModelHandle, circuit: ViewedCircuit, ref: str, n: int = 32, warnings: list[str] = ()
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
        "circuit": circuit_summary(circuit, ref, handle.root),
        "model": handle.ref,
        "class_names": list(class_names),
        "graph": graph,
        "warnings": warnings,
    }


TAIL_TOKENS = 12
"""Tokens of each context the results table shows before it is opened (the whole is there)."""


def task_examples(handle: ModelHandle, task: str, n: int) -> list[dict[str, Any]]:
    """The examples interventions are scored on (for the results table): the context's last
    tokens, the whole context, the class and the two candidates."""
    batch, class_names = handle.task_batch(task, n)
    out = []
    for i in range(len(batch)):
        length = int(batch.lengths[i])
        ids = batch.tokens[i, :length].tolist()
        out.append({
            "label": int(batch.label[i]),
            "class": class_names[int(batch.label[i])],
            "tail": "".join(handle.strings[t] for t in ids[-TAIL_TOKENS:]),
            "context": "".join(handle.strings[t] for t in ids),
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
    circuit: ViewedCircuit | None = None,
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
