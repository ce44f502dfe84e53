"""`circuit.json` (+ `circuit.safetensors`): a circuit on disk (DESIGN.md).

circuit.json is plain JSON, readable without this package:

    format, format_version          "sparsecircuits.circuit", 1
    model                           path, content_hash (sha256 of model.safetensors), step, config
    task                            name, description, split_sizes, seed, candidates
    ablation, target_loss           how pruned nodes were replaced; the val loss to reach
    nodes                           [{name, location, index, layer, kind, mask_score, ablation_value}]
    edges                           [[source node, target node, weight]] (internal: the headline)
    embed_edges, unembed_edges      [["embed.<id>", "resid.<c>", w]], [["resid.<c>", "unembed.<id>", w]]
    residual_links                  [[write node, later read node]] on the same channel (no weight)
    counts                          nodes, edges, embed_edges, unembed_edges, edges_total, ...
    losses                          full model, circuit val before/after calibration, test
    calibration                     scale, shift (shift is added to both candidate logits)
    validation                      sufficiency, necessity (+ fraction), all-ablated, controls
    baseline                        gradient-attribution pruning with the same search, or null
    search                          the Optuna search that chose the hyperparameters, or null
    hyperparameters                 the PruneConfig used
    training                        mask optimisation curve summary and the k search trace
    wall_time_s                     seconds per phase
    tensors                         name of the sidecar .safetensors (mask scores, means)

A file of another format version, or one that is not a circuit, is a one-line CircuitError.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sparsecircuits.errors import CircuitError
from sparsecircuits.fileformat import read_versioned_json

FORMAT = "sparsecircuits.circuit"
FORMAT_VERSION = 1
JSON_NAME = "circuit.json"
TENSORS_NAME = "circuit.safetensors"
NODE_KINDS = {
    "attn.act_in": "read", "attn.q": "q", "attn.k": "k", "attn.v": "v",
    "attn.resid_delta": "write", "mlp.act_in": "read", "mlp.post_act": "neuron",
    "mlp.resid_delta": "write",
}  # fmt: skip


def node_kind(location: str) -> str:
    """'0.mlp.post_act' -> 'neuron'; reads, writes, q, k, v likewise."""
    return NODE_KINDS.get(location.split(".", 1)[1], "other")


@dataclass
class Circuit:
    """The contents of circuit.json (see the module docstring for each field)."""

    model: dict[str, Any]
    task: dict[str, Any]
    ablation: str
    target_loss: float
    nodes: list[dict[str, Any]]
    edges: list[list[Any]]
    embed_edges: list[list[Any]]
    unembed_edges: list[list[Any]]
    residual_links: list[list[str]]
    counts: dict[str, Any]
    losses: dict[str, Any]
    calibration: dict[str, Any]
    validation: dict[str, Any]
    baseline: dict[str, Any] | None
    search: dict[str, Any] | None
    hyperparameters: dict[str, Any]
    training: dict[str, Any]
    wall_time_s: dict[str, float]
    tensors: str = TENSORS_NAME

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.nodes]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    def save(self, out_dir: str | Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
        """Write circuit.json (and the sidecar tensors) into `out_dir`; returns the json path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if tensors is not None:
            _atomic(
                out / self.tensors,
                lambda p: save_file(
                    {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                    p,
                    metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)},
                ),
            )
        text = json.dumps(_jsonable(self.to_dict()), indent=1, allow_nan=False) + "\n"
        _atomic(out / JSON_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return out / JSON_NAME


def _jsonable(value: Any) -> Any:
    """NaN / inf have no JSON spelling: write them as null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_circuit(path: str | Path) -> Circuit:
    """Read circuit.json (or a directory holding one); CircuitError if unusable."""
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    if not p.is_file():
        raise CircuitError(f"circuit file {path} does not exist")
    doc = read_versioned_json(p, FORMAT, FORMAT_VERSION, "circuit", CircuitError)
    names = {f.name for f in fields(Circuit)}
    required = {f.name for f in fields(Circuit) if f.name != "tensors"}
    missing = sorted(required - set(doc))
    if missing:
        raise CircuitError(f"{p} is corrupt: missing {', '.join(missing)}")
    circuit = Circuit(**{k: v for k, v in doc.items() if k in names})
    _check_shapes(circuit, p)
    return circuit


def _check_shapes(c: Circuit, p: Path) -> None:
    ok = isinstance(c.nodes, list) and all(isinstance(n, dict) and "name" in n for n in c.nodes)
    for edges in (c.edges, c.embed_edges, c.unembed_edges):
        ok = (
            ok
            and isinstance(edges, list)
            and all(
                isinstance(e, list)
                and len(e) == 3
                and isinstance(e[0], str)
                and isinstance(e[1], str)
                for e in edges
            )
        )
    if not ok:
        raise CircuitError(f"{p} is corrupt: malformed nodes or edges")


def load_circuit_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The sidecar tensors of a circuit (mask scores, ablation means); CircuitError if unusable."""
    p = Path(path)
    circuit = load_circuit(p)
    file = (p if p.is_dir() else p.parent) / circuit.tensors
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CircuitError(f"{file} is unreadable: {str(exc).splitlines()[0]}") from None
