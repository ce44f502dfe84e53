"""Reading `circuit.json` files for the viewer: the one place that knows their layout.

The pruner (`sparsecircuits.circuits`) writes the file; DESIGN.md lists what it holds: a format
marker and version, the model (path + content hash), the task, the ablation kind, the kept
nodes, the edges `[source, target, weight]`, residual links, node/edge counts, losses,
calibration and pruning hyperparameters, with large tensors (ablation means) in a sidecar
`.safetensors` (`tensors`, keys `mean.<location>`). This reader is deliberately lenient about *how* each field is spelled (a node
may be a name or `{"name": ...}`, an edge a list or a dict, the model a path or a dict) and
strict about what the viewer needs: node names that parse, edges between strings with a
finite weight. Anything unusable raises CircuitError with a one-line message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.errors import CircuitError, SparseCircuitsError
from sparsecircuits.model.hooks import parse_node

FORMAT = "sparsecircuits.circuit"
"""The marker the pruner writes in the `format` field (a `sparsecircuits.circuit*` prefix is
accepted, so a variant marker such as `sparsecircuits.circuit.v2` still lists)."""
READABLE_VERSIONS = (1,)
MAX_BYTES = 64 * 2**20  # a circuit file is small; anything bigger is not one
# File names that are never circuits (skipped when scanning a directory without opening them).
NOT_CIRCUITS = {"config.json", "tokenizer.json", "trainer.json", "meta.json", "files.json"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    weight: float | None
    """None for a link without a weight (a residual link written as a pair)."""


@dataclass(frozen=True)
class CircuitFile:
    """What the viewer needs from a circuit file."""

    path: Path
    """The circuit file itself."""
    task: str
    """Task name (or a .jsonl path) the circuit was pruned for."""
    nodes: tuple[str, ...]
    """Kept nodes, e.g. `0.mlp.post_act.460`."""
    edges: tuple[Edge, ...]
    """Nonzero weights between kept nodes."""
    residual_links: tuple[Edge, ...]
    """Residual-stream connections between kept write and read nodes (drawn dashed)."""
    model_path: str | None
    """The model as written in the file (may be relative; see `workspace.circuit_model`)."""
    model_hash: str | None
    """sha256 of the model's weights when the circuit was found."""
    ablation: str | None
    """How pruned nodes were ablated: 'mean', 'zero', ..."""
    counts: dict[str, Any] = field(default_factory=dict)
    """Nodes / edges counts as the pruner reported them."""
    losses: dict[str, Any] = field(default_factory=dict)
    """Task loss of the circuit on val / test, necessity loss, ... (name -> number)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Other top-level scalars worth showing (target loss, split sizes, calibration, ...)."""
    means_file: Path | None = None
    """Sidecar `.safetensors` with the ablation means per location, when there is one."""
    candidates: tuple[int, ...] = ()
    """Token ids of the task's candidates, when the file lists them."""
    embed_edges: tuple[Edge, ...] = ()
    """('embed.<token id>', 'resid.<channel>', weight): embedding rows into read channels."""
    unembed_edges: tuple[Edge, ...] = ()
    """('resid.<channel>', 'unembed.<token id>', weight): write channels into candidate logits."""
    node_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per node, the scalars the file stores with it (mask score, ablation value, ...)."""
    calibration: tuple[float, float] | None = None
    """(scale, shift) fitted to the circuit's candidate logits, when the file has them."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """A display name: the file's stem, or its directory for the pruner's `circuit.json`."""
        if self.path.stem == "circuit" and self.path.parent.name:
            return self.path.parent.name
        return self.path.stem


def _marker_ok(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("format", "")).startswith(FORMAT)


def is_circuit_file(path: Path) -> bool:
    """Cheap test used when scanning a directory: a small JSON file with the circuit marker."""
    if path.suffix != ".json" or path.name in NOT_CIRCUITS:
        return False
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
        # The marker is near the top of any file the pruner writes; skip the full parse otherwise.
        if FORMAT.encode() not in head:
            return False
        return _marker_ok(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _node_name(item: Any, where: str) -> str:
    name = item.get("name", item.get("node")) if isinstance(item, dict) else item
    if not isinstance(name, str):
        raise CircuitError(f"{where}: a node is not a name: {item!r:.80}")
    try:
        parse_node(name)
    except SparseCircuitsError as exc:
        raise CircuitError(f"{where}: {exc}") from None
    return name


def _edge(item: Any, where: str, need_weight: bool) -> Edge:
    if isinstance(item, dict):
        src = item.get("source", item.get("src"))
        dst = item.get("target", item.get("dst"))
        weight = item.get("weight", item.get("w"))
    elif isinstance(item, (list, tuple)) and len(item) in (2, 3):
        src, dst = item[0], item[1]
        weight = item[2] if len(item) == 3 else None
    else:
        raise CircuitError(f"{where}: an edge is not [source, target, weight]: {item!r:.80}")
    if not isinstance(src, str) or not isinstance(dst, str):
        raise CircuitError(f"{where}: an edge endpoint is not a node name: {item!r:.80}")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise CircuitError(f"{where}: edge weight is not a number: {item!r:.80}")
        if not math.isfinite(weight):
            raise CircuitError(f"{where}: edge weight is not finite: {item!r:.80}")
        weight = float(weight)
    elif need_weight:
        raise CircuitError(f"{where}: an edge has no weight: {item!r:.80}")
    return Edge(src, dst, weight)


def _model_ref(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    model = doc.get("model")
    path = hash_ = None
    if isinstance(model, str):
        path = model
    elif isinstance(model, dict):
        path = model.get("path", model.get("checkpoint"))
        hash_ = model.get("content_hash", model.get("hash", model.get("sha256")))
    path = path if isinstance(path, str) else doc.get("model_path")
    hash_ = hash_ if isinstance(hash_, str) else doc.get("model_hash", doc.get("content_hash"))
    return (path if isinstance(path, str) else None, hash_ if isinstance(hash_, str) else None)


def _scalars(value: Any, depth: int = 2) -> dict[str, Any]:
    """A dict's number/string/bool entries, nested dicts flattened with '.' down to `depth`."""
    out: dict[str, Any] = {}
    if not isinstance(value, dict):
        return out
    for key, v in value.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[str(key)] = v
        elif isinstance(v, dict) and depth > 1:
            out.update({f"{key}.{k}": v2 for k, v2 in _scalars(v, depth - 1).items()})
    return out


def _means_file(doc: dict[str, Any], path: Path) -> Path | None:
    for key in ("tensors", "means_file", "ablation_means", "means", "sidecar"):
        value = doc.get(key)
        if isinstance(value, dict):
            value = value.get("path", value.get("file"))
        if isinstance(value, str) and value:
            candidate = Path(value) if Path(value).is_absolute() else path.parent / value
            if candidate.is_file():
                return candidate
    default = path.with_suffix(".safetensors")
    return default if default.is_file() else None


def parse_circuit(doc: Any, path: Path) -> CircuitFile:
    """Validate a parsed circuit document (see the module docstring for what is accepted)."""
    where = str(path)
    if not _marker_ok(doc):
        raise CircuitError(f"{where} is not a circuit file (no '{FORMAT}' format marker)")
    version = doc.get("format_version", doc.get("version"))
    if version not in READABLE_VERSIONS:
        raise CircuitError(
            f"{where} has circuit format version {version!r}; this viewer reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    task = doc.get("task")
    task_doc = task if isinstance(task, dict) else {}
    if isinstance(task, dict):
        task = task.get("name")
    if not isinstance(task, str) or not task:
        raise CircuitError(f"{where} names no task")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list):
        raise CircuitError(f"{where} has no list of nodes")
    nodes = tuple(dict.fromkeys(_node_name(n, where) for n in raw_nodes))
    raw_edges = doc.get("edges", [])
    raw_links = doc.get("residual_links", [])
    if not isinstance(raw_edges, list) or not isinstance(raw_links, list):
        raise CircuitError(f"{where}: edges and residual_links must be lists")
    edges = tuple(_edge(e, where, need_weight=True) for e in raw_edges)
    links = tuple(_edge(e, where, need_weight=False) for e in raw_links)
    token_edges = {}
    for key in ("embed_edges", "unembed_edges"):
        raw = doc.get(key, [])
        if not isinstance(raw, list):
            raise CircuitError(f"{where}: {key} must be a list")
        token_edges[key] = tuple(_edge(e, where, need_weight=True) for e in raw)
    candidates = tuple(
        c["id"] for c in task_doc.get("candidates", []) or []
        if isinstance(c, dict) and isinstance(c.get("id"), int) and not isinstance(c["id"], bool)
    )
    node_meta = {
        _node_name(n, where): {k: v for k, v in n.items() if k != "name" and _is_plain(v)}
        for n in raw_nodes if isinstance(n, dict)
    }
    cal = doc.get("calibration")
    calibration = None
    if isinstance(cal, dict) and _is_number(cal.get("scale")) and _is_number(cal.get("shift")):
        if cal["scale"] > 0:
            calibration = (float(cal["scale"]), float(cal["shift"]))
    model_path, model_hash = _model_ref(doc)
    ablation = doc.get("ablation", doc.get("ablation_kind"))
    if isinstance(ablation, dict):
        ablation = ablation.get("kind")
    counts = _scalars(doc.get("counts"), depth=1)
    counts.setdefault("nodes", len(nodes))
    counts.setdefault("edges", len(edges))
    losses = {k: v for k, v in _scalars(doc.get("losses")).items() if _is_number(v)}
    skip = {"format", "format_version", "version", "task", "nodes", "edges", "residual_links",
            "model", "counts", "losses"}
    summary = {k: v for k, v in doc.items() if k not in skip and _is_plain(v)}
    if isinstance(doc.get("model"), dict) and _is_plain(doc["model"].get("step")):
        summary["model.step"] = doc["model"]["step"]
    summary.update({f"task.{k}": v for k, v in _scalars(task_doc.get("split_sizes")).items()})
    nested_counts = {k: v for k, v in _scalars(doc.get("counts")).items() if "." in k}
    summary.update({f"counts.{k}": v for k, v in nested_counts.items()})
    for key in ("calibration", "validation", "split_sizes", "hyperparameters"):
        summary.update({f"{key}.{k}": v for k, v in _scalars(doc.get(key)).items()})
    return CircuitFile(
        path=path,
        task=task,
        nodes=nodes,
        edges=edges,
        residual_links=links,
        model_path=model_path,
        model_hash=model_hash,
        ablation=ablation if isinstance(ablation, str) else None,
        counts=counts,
        losses=losses,
        summary=summary,
        means_file=_means_file(doc, path),
        candidates=candidates,
        embed_edges=token_edges["embed_edges"],
        unembed_edges=token_edges["unembed_edges"],
        node_meta=node_meta,
        calibration=calibration,
        raw=doc,
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) and not (isinstance(v, float) and math.isnan(v))


def read_circuit(path: str | Path) -> CircuitFile:
    """Read and validate a circuit file; CircuitError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CircuitError(f"circuit file {path} does not exist")
    if path.stat().st_size > MAX_BYTES:
        raise CircuitError(f"{path} is too large to be a circuit file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CircuitError(f"{path} is not valid JSON: {exc}") from None
    return parse_circuit(doc, path)
