"""What the viewer shows of a circuit: a thin view of `circuits.circuit_file.Circuit`.

`circuits/circuit_file.py` is the only reader of circuit.json and its sidecar, and checks
everything; this module only reshapes a checked `Circuit` into the names and flat scalar
tables the graph, the panels and the front end use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.circuits.circuit_file import Circuit, load_circuit


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    weight: float | None
    """None for a residual link (a connection, not a weight)."""


@dataclass(frozen=True)
class ViewedCircuit:
    """A circuit as the viewer uses it."""

    circuit: Circuit = field(repr=False)
    """The checked contents of the file (and its sidecar reference)."""
    path: Path
    """The circuit.json itself."""
    sidecar: Path | None
    """Its sidecar tensors file (mask scores, ablation means), if it has one."""
    task: str
    """Name (or .jsonl path) of the task the circuit was pruned for."""
    nodes: tuple[str, ...]
    """Kept nodes, e.g. `0.mlp.post_act.460`."""
    edges: tuple[Edge, ...]
    residual_links: tuple[Edge, ...]
    embed_edges: tuple[Edge, ...]
    """('embed.<token id>', 'resid.<channel>', weight): embedding rows into read channels."""
    unembed_edges: tuple[Edge, ...]
    """('resid.<channel>', 'unembed.<token id>', weight): write channels into candidate logits."""
    model_path: str
    """The model as written in the file (may be relative; see `workspace.find_circuit_model`)."""
    model_hash: str
    """sha256 of the model's weights when the circuit was found."""
    ablation: str
    """How pruned nodes were replaced: 'mean', 'zero' or 'resample'."""
    calibration: tuple[float, float]
    """(scale, shift) fitted to the circuit's candidate logits."""
    candidates: tuple[int, ...]
    """Token ids of the task's candidates."""
    counts: dict[str, Any]
    """Top-level counts (nodes, edges, ...)."""
    losses: dict[str, float]
    """The file's finite losses, name -> number."""
    summary: dict[str, Any]
    """Other scalars worth showing (target loss, split sizes, calibration, validation, ...)."""
    node_meta: dict[str, dict[str, Any]]
    """Per node, the scalars the file stores with it (mask score, ablation value, ...)."""

    @property
    def name(self) -> str:
        """A display name: the file's stem, or its directory for the pruner's `circuit.json`."""
        if self.path.stem == "circuit" and self.path.parent.name:
            return self.path.parent.name
        return self.path.stem


def read_circuit(path: str | Path) -> ViewedCircuit:
    """Read a circuit file (CircuitError if unusable) and view it."""
    return view(load_circuit(path))


def view(c: Circuit) -> ViewedCircuit:
    assert c.path is not None, "a circuit is viewed once it is on disk"
    counts = _scalars(c.counts, depth=1)
    summary: dict[str, Any] = {"ablation": c.ablation, "target_loss": c.target_loss}
    if _is_plain(c.model.get("step")):
        summary["model.step"] = c.model["step"]
    summary.update({f"task.{k}": v for k, v in _scalars(c.task["split_sizes"]).items()})
    summary.update({f"counts.{k}": v for k, v in _scalars(c.counts).items() if "." in k})
    for key in ("calibration", "validation", "hyperparameters"):
        summary.update({f"{key}.{k}": v for k, v in _scalars(getattr(c, key)).items()})
    return ViewedCircuit(
        circuit=c,
        path=c.path,
        sidecar=c.sidecar_path,
        task=c.task["name"],
        nodes=tuple(c.node_names),
        edges=tuple(Edge(*e) for e in c.edges),
        residual_links=tuple(Edge(*link, None) for link in c.residual_links),
        embed_edges=tuple(Edge(*e) for e in c.embed_edges),
        unembed_edges=tuple(Edge(*e) for e in c.unembed_edges),
        model_path=c.model["path"],
        model_hash=c.model["content_hash"],
        ablation=c.ablation,
        calibration=(float(c.calibration["scale"]), float(c.calibration["shift"])),
        candidates=tuple(cand["id"] for cand in c.task["candidates"]),
        counts=counts,
        losses={k: v for k, v in _scalars(c.losses).items() if _is_number(v)},
        summary=summary,
        node_meta={
            n["name"]: {k: v for k, v in n.items() if k != "name" and _is_plain(v)} for n in c.nodes
        },
    )


def _scalars(value: dict[str, Any], depth: int = 2) -> dict[str, Any]:
    """A dict's number/string/bool/null entries, nested dicts flattened with '.' to `depth`."""
    out: dict[str, Any] = {}
    for key, v in value.items():
        if isinstance(v, int | float | str | bool) or v is None:
            out[str(key)] = v
        elif isinstance(v, dict) and depth > 1:
            out.update({f"{key}.{k}": v2 for k, v2 in _scalars(v, depth - 1).items()})
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_plain(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) and not (isinstance(v, float) and math.isnan(v))
