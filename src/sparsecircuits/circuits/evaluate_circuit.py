"""A saved circuit on another task: does it hold beyond the examples it was found on?

`sparsecircuits circuit eval CIRCUIT --task NAME_OR_JSONL` rebuilds the pruner the circuit was
found with (the same model, checked by content hash; the same ablation values, read from the
circuit's sidecar for mean ablation; the same pruning config) and measures, on one split of
any task the model's tokenizer can express (docs/method.md §6):

- the full model;
- the circuit alone, calibrated with the scale and shift stored in circuit.json (and without
  them), every other node ablated;
- the model without the circuit (only the circuit's nodes ablated), and with every node
  ablated, which put the necessity in scale as in `prune`'s validation.

Every number comes from `validate.sufficiency_necessity` on a Pruner, the same code `prune`
validates with, so on the circuit's own task and split the numbers are the stored ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sparsecircuits.checkpoint import CHECKPOINT_DIR, Loaded, load_checkpoint
from sparsecircuits.circuits.ablation import Ablation, MeanAblation
from sparsecircuits.circuits.circuit_file import Circuit, load_circuit, load_circuit_tensors
from sparsecircuits.circuits.config import config_from_dict
from sparsecircuits.circuits.pipeline import CircuitContext
from sparsecircuits.circuits.pruner import Pruner
from sparsecircuits.circuits.task_data import TaskData, load_task_data
from sparsecircuits.circuits.validate import sufficiency_necessity
from sparsecircuits.errors import CircuitError, TaskError
from sparsecircuits.tasks.base import SPLITS
from sparsecircuits.tasks.encoding import TaskBatch, pad_id

ROWS = (
    ("full_model", "full model"),
    ("sufficiency", "circuit alone (calibrated)"),
    ("sufficiency_uncalibrated", "circuit alone (uncalibrated)"),
    ("necessity", "model without the circuit"),
    ("all_ablated", "every node ablated"),
)
"""(key of sufficiency_necessity's result, label) in the order a report shows them."""


ALL_SPLITS = "all"
"""The split name that evaluates train, val and test together."""


def check_eval_split(split: str) -> None:
    if split not in (*SPLITS, ALL_SPLITS):
        raise TaskError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or all")


@dataclass(frozen=True)
class CircuitOnTask:
    """A circuit rebuilt around its model, ready to be measured on any task."""

    circuit: Circuit
    loaded: Loaded
    pruner: Pruner
    """The pruner the circuit was found with: same model, ablation values and config."""
    gates: Tensor
    """0/1 unit gates [n_units] of the circuit's nodes."""
    ablation_source: str
    """Where the ablation values come from (the circuit's sidecar, or recomputed)."""


def find_model(circuit: Circuit, model: str | Path | None = None) -> Path:
    """The checkpoint to load: `model` if given, else the path circuit.json names (as written,
    then relative to the circuit's directory); CircuitError if none exists."""
    if model is not None:
        candidates = [Path(model)]
    else:
        written = Path(circuit.model["path"])
        candidates = [written]
        if not written.is_absolute() and circuit.path is not None:
            candidates.append(circuit.path.parent / written)
    for cand in candidates:
        if (cand / "model.safetensors").is_file() or (cand / CHECKPOINT_DIR).is_dir():
            return cand
    raise CircuitError(
        f"cannot find the model of circuit {circuit.path}: {candidates[0]} is not a checkpoint; "
        "pass --model"
    )


def rebuild(
    circuit_path: str | Path,
    model: str | Path | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> CircuitOnTask:
    """Load a circuit and its model and rebuild its pruner (CircuitError if they disagree)."""
    circuit = load_circuit(circuit_path)
    tensors = load_circuit_tensors(circuit)
    cfg = config_from_dict(circuit.hyperparameters)
    loaded = load_checkpoint(find_model(circuit, model), device=device)
    if loaded.content_hash != circuit.model["content_hash"]:
        raise CircuitError(
            f"{loaded.path} is not the model circuit {circuit.path} was found in (its weights' "
            f"sha256 {loaded.content_hash[:12]} differs from the circuit's "
            f"{circuit.model['content_hash'][:12]})"
        )
    ablation, source = _ablation(circuit, tensors, loaded, cfg, cache_dir)
    pruner = Pruner(loaded.model, ablation, cfg)
    gates = _gates(circuit, tensors, pruner)
    return CircuitOnTask(circuit, loaded, pruner, gates.to(torch.float32), source)


def _ablation(
    circuit: Circuit, tensors: dict[str, Tensor], loaded: Loaded, cfg, cache_dir: Path | None
) -> tuple[Ablation, str]:
    """The circuit's own means when it saved them (exactly what it was pruned with); other
    kinds are rebuilt the way `prune` builds them."""
    if cfg.ablation == "mean":
        saved = MeanAblation.from_tensors(tensors, loaded.model.location_width)
        if saved is not None:
            device = next(loaded.model.parameters()).device
            means = {loc: m.to(device) for loc, m in saved.means.items()}
            return MeanAblation(means), f"means from the circuit's sidecar {circuit.sidecar.file}"
    ablation = CircuitContext(loaded, cfg, cache_dir).ablation()
    return ablation, f"{cfg.ablation} ablation recomputed for the model"


def _gates(circuit: Circuit, tensors: dict[str, Tensor], pruner: Pruner) -> Tensor:
    """The sidecar's unit gates if present, else the nodes' units; checked against the nodes."""
    layout = pruner.layout
    gates = tensors.get("unit_gates")
    if gates is None:
        gates = layout.unit_gates_for_nodes(circuit.node_names)
    elif tuple(gates.shape) != (layout.n_units,):
        raise CircuitError(
            f"circuit {circuit.path}: unit_gates has shape {tuple(gates.shape)}, the model has "
            f"{layout.n_units} units"
        )
    if layout.nodes(gates) != circuit.node_names:
        raise CircuitError(f"circuit {circuit.path}: its unit gates do not match its node list")
    return gates


def task_data(rebuilt: CircuitOnTask, task: str) -> TaskData:
    """The task's splits for the circuit's tokenizer, with the circuit's split sizes and seed
    (so its own task gives its own examples back); TaskError if the task cannot be expressed,
    e.g. candidates that are not single tokens."""
    loaded = rebuilt.loaded
    try:
        return load_task_data(task, loaded.tokenizer, rebuilt.pruner.cfg, loaded.model.cfg.n_ctx)
    except TaskError as exc:
        raise TaskError(f"{exc} (the tokenizer of {loaded.path})") from None


def concat_batches(batches: list[TaskBatch], pad: int) -> TaskBatch:
    """One right-padded batch holding every row of `batches`, in order."""
    t_max = max(b.tokens.shape[1] for b in batches)
    return TaskBatch(
        tokens=torch.cat(
            [F.pad(b.tokens, (0, t_max - b.tokens.shape[1]), value=pad) for b in batches]
        ),  # fmt: skip
        lengths=torch.cat([b.lengths for b in batches]),
        correct_id=torch.cat([b.correct_id for b in batches]),
        wrong_id=torch.cat([b.wrong_id for b in batches]),
        label=torch.cat([b.label for b in batches]),
        n_truncated=sum(b.n_truncated for b in batches),
    )


def evaluate_on(rebuilt: CircuitOnTask, data: TaskData, split: str = "test") -> dict[str, Any]:
    """Loss, the other loss and accuracy of the five rows (ROWS) on one split of `data`
    (`all`: the three together, e.g. for a task mined from held-out files)."""
    check_eval_split(split)
    if split == ALL_SPLITS:
        pad = pad_id(rebuilt.loaded.tokenizer)
        batch = concat_batches([data.train, data.val, data.test], pad)
    else:
        batch = getattr(data, split)
    c = rebuilt.circuit
    cal = c.calibration
    # sufficiency_necessity measures data.test: hand it the requested split in that place.
    result = sufficiency_necessity(
        rebuilt.pruner, replace(data, test=batch), rebuilt.gates, cal["scale"], cal["shift"]
    )
    del result["sufficient"]  # "within the target" only means something on the circuit's task
    tok = rebuilt.loaded.tokenizer
    pruned_for = sorted(int(x["id"]) for x in c.task["candidates"])
    return {
        "circuit": str(c.path),
        "circuit_task": c.task["name"],
        "model": str(rebuilt.loaded.path),
        "loss": rebuilt.pruner.cfg.loss,
        "target_loss": c.target_loss,
        "nodes": c.counts["nodes"],
        "edges": c.counts["edges"],
        "calibration": {"scale": cal["scale"], "shift": cal["shift"]},
        "ablation": rebuilt.pruner.cfg.ablation,
        "ablation_source": rebuilt.ablation_source,
        "task": data.name,
        "split": split,
        "examples": len(batch),
        "candidates": [{"id": i, "text": tok.decode([i])} for i in data.candidate_tokens],
        "same_candidates": list(data.candidate_tokens) == pruned_for,
        **result,
    }


def evaluate_circuit(
    circuit_path: str | Path,
    task: str,
    split: str = "test",
    model: str | Path | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """`circuit eval` as a function: rebuild the circuit and measure it on `task`'s `split`."""
    check_eval_split(split)
    rebuilt = rebuild(circuit_path, model, device, cache_dir)
    return evaluate_on(rebuilt, task_data(rebuilt, task), split)


def report(result: dict[str, Any]) -> str:
    """The human-readable table of one evaluation."""
    first = result["loss"]
    other = "task_loss" if first == "two_way" else "two_way_loss"
    candidates = ", ".join(repr(c["text"]) for c in result["candidates"])
    lines = [
        f"circuit {result['circuit']}: {result['nodes']} nodes, {result['edges']} edges, pruned "
        f"on {result['circuit_task']} to {first} loss {result['target_loss']:g}",
        f"task {result['task']}, split {result['split']}: {result['examples']} examples, "
        f"candidates {candidates}"
        + ("" if result["same_candidates"] else " (not the circuit's candidates)"),
        f"ablation: {result['ablation_source']}",
        "",
        f"{'':<30} {first + ' loss':>14} {other.replace('_', ' '):>14} {'accuracy':>9}",
    ]
    for key, label in ROWS:
        row = result[key]
        lines.append(
            f"{label:<30} {row['loss']:>14.4f} {row[other]:>14.4f} {row['accuracy']:>9.3f}"
        )
    fraction = result["necessity_fraction"]
    shown = "-" if fraction != fraction else f"{fraction:.2f}"  # NaN: no gap to scale by
    lines.append(
        f"\nremoving the circuit goes {shown} of the way from the full model to every node ablated"
    )
    return "\n".join(lines)
