"""`circuit.json` + its sidecar `.safetensors`: a circuit on disk. The one reader and writer.

circuit.json is plain JSON, readable without this package (docs/architecture.md):

    format, format_version          "sparsecircuits.circuit", 2
    model                           path, content_hash (sha256 of model.safetensors), step, config
    task                            name, description, split_sizes, seed, candidates, n_truncated
    ablation, target_loss           how pruned nodes were replaced (mean, zero, resample); the
                                    val loss to reach
    nodes                           [{name, location, index, layer, kind, mask_score,
                                    ablation_value}]; kind is one of model.locations.NODE_KINDS
    edges                           [[source node, target node, weight]] (internal: the headline)
    embed_edges                     [["embed.<id>" or "pos_embed.<position>", "resid.<c>", w]]
    unembed_edges                   [["resid.<c>", "unembed.<id>", w]]
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
    tensors                         {file, sha256} of the sidecar (mask scores, `mean.<location>`
                                    ablation means, ...), or null

The pair is written so that a kill at any moment leaves a consistent one (`Circuit.save`): the
sidecar first, under a new name taken from its content's hash, so it never replaces the sidecar
the current circuit.json names; then circuit.json, replaced in one rename, naming the new
sidecar and its sha256; only then is the old sidecar deleted. A kill between the steps leaves
the old pair or the new pair intact, plus at most one sidecar that nothing names. The reader
checks the sidecar's sha256, so a json and a sidecar that were not written together are an
error, never silently mixed.

Reading is strict: a file of another format or version, a missing or mistyped key, a
non-finite number where one is required, a node name that does not parse, an edge to a node
the circuit does not have, a missing sidecar or one whose hash differs is a one-line
CircuitError naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from sparsecircuits.errors import CircuitError
from sparsecircuits.fileformat import (
    atomic_write_bytes,
    dumps_strict,
    read_versioned_json,
    write_json,
)
from sparsecircuits.model.locations import node_kind, parse_node_name

FORMAT = "sparsecircuits.circuit"
FORMAT_VERSION = 2
"""2: the sidecar is named by circuit.json with its sha256 (`tensors`); node kinds
resid_read / resid_write. Version 1 files (sidecar `circuit.safetensors`, unhashed) are refused."""
JSON_NAME = "circuit.json"
MAX_BYTES = 64 * 2**20
"""A circuit.json is small; a larger file is refused before it is read."""
ABLATIONS = ("mean", "zero", "resample")
FLOAT32_MAX = 3.4028234663852886e38
"""Calibration is applied in float32: a scale or shift beyond this is not a usable number."""

_INDEXED = r"(0|[1-9][0-9]*)"
_EMBED_SOURCE = re.compile(rf"(embed|pos_embed)\.{_INDEXED}", re.ASCII)
_CHANNEL = re.compile(rf"resid\.{_INDEXED}", re.ASCII)
_UNEMBED_TARGET = re.compile(rf"unembed\.{_INDEXED}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_SIDECAR_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\.safetensors", re.ASCII)


@dataclass(frozen=True)
class Sidecar:
    """The sidecar tensors file named by a circuit.json."""

    file: str
    """File name, in circuit.json's directory."""
    sha256: str
    """Hex sha256 of the file's bytes."""


def _json(kind: str) -> Any:
    """A field of circuit.json, with the JSON type the reader requires of it."""
    return field(metadata={"json": kind})


@dataclass
class Circuit:
    """The contents of circuit.json (see the module docstring for each field)."""

    model: dict[str, Any] = _json("an object")
    task: dict[str, Any] = _json("an object")
    ablation: str = _json("a string")
    target_loss: float = _json("a finite number")
    nodes: list[dict[str, Any]] = _json("a list")
    edges: list[list[Any]] = _json("a list")
    embed_edges: list[list[Any]] = _json("a list")
    unembed_edges: list[list[Any]] = _json("a list")
    residual_links: list[list[str]] = _json("a list")
    counts: dict[str, Any] = _json("an object")
    losses: dict[str, Any] = _json("an object")
    calibration: dict[str, Any] = _json("an object")
    validation: dict[str, Any] = _json("an object")
    baseline: dict[str, Any] | None = _json("an object or null")
    search: dict[str, Any] | None = _json("an object or null")
    hyperparameters: dict[str, Any] = _json("an object")
    training: dict[str, Any] = _json("an object")
    wall_time_s: dict[str, float] = _json("an object")
    path: Path | None = field(default=None, compare=False)
    """The circuit.json this was read from (None for a circuit not yet saved)."""
    sidecar: Sidecar | None = field(default=None, compare=False)
    """The sidecar named by the file it was read from."""

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.nodes]

    @property
    def sidecar_path(self) -> Path | None:
        if self.sidecar is None or self.path is None:
            return None
        return self.path.parent / self.sidecar.file

    def to_dict(self) -> dict[str, Any]:
        """The circuit.json document (naming the sidecar this circuit was read with, if any)."""
        doc = asdict(self)
        del doc["path"], doc["sidecar"]
        tensors = asdict(self.sidecar) if self.sidecar is not None else None
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **doc, "tensors": tensors}

    def save(self, out_dir: str | Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
        """Write `out_dir/circuit.json` and its sidecar `tensors`; returns the json's path.

        Safe under a kill at any point (see the module docstring); files are created 0644.
        """
        out = Path(out_dir)
        json_path = out / JSON_NAME
        previous = _own_sidecar_named_by(json_path)
        sidecar = None
        if tensors is not None:
            data = save_safetensors(
                {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                # One metadata entry: safetensors writes several in any order, and equal
                # tensors should give equal bytes, so a re-save keeps the same sidecar name.
                metadata={"format": FORMAT},
            )
            digest = hashlib.sha256(data).hexdigest()
            sidecar = Sidecar(f"{json_path.stem}.{digest[:16]}.safetensors", digest)
        doc = self.to_dict()
        doc["tensors"] = asdict(sidecar) if sidecar is not None else None
        doc = json.loads(dumps_strict(doc))  # exactly what the file will hold
        try:
            _check_content(doc)  # never write a file the reader would refuse
        except _Bad as bad:
            raise CircuitError(f"refusing to write an invalid circuit {json_path}: {bad}") from None
        try:
            if sidecar is not None:
                atomic_write_bytes(out / sidecar.file, data)
            write_json(json_path, doc)
        except OSError as exc:
            raise CircuitError(f"cannot write the circuit to {out}: {exc.strerror}") from None
        if previous is not None and (sidecar is None or previous != sidecar.file):
            (out / previous).unlink(missing_ok=True)
        return json_path


def _own_sidecar_named_by(json_path: Path) -> str | None:
    """The sidecar an existing circuit.json names, if it is one `save` wrote beside it."""
    try:
        tensors = json.loads(json_path.read_text(encoding="utf-8")).get("tensors")
        name = tensors["file"]
    except (OSError, ValueError, AttributeError, TypeError, KeyError, RecursionError):
        return None
    own = re.fullmatch(rf"{re.escape(json_path.stem)}\.[0-9a-f]{{16}}\.safetensors", str(name))
    return name if own else None


def is_circuit_file(path: Path) -> bool:
    """Cheap test used when scanning a directory: a small .json file whose first 4 KiB hold the
    circuit marker (the writer puts it first). Whether it is a *good* circuit is load_circuit's
    question, so a damaged one can be listed with its error."""
    try:
        if path.suffix != ".json" or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return False
        with open(path, "rb") as f:
            return f'"{FORMAT}"'.encode() in f.read(4096)
    except OSError:
        return False


# ------------------------------------------------------------------------------------ reading


def load_circuit(path: str | Path) -> Circuit:
    """Read circuit.json (or a directory holding one) and check it; CircuitError if unusable.

    The sidecar must exist beside it (its hash is checked by `load_circuit_tensors`, which
    reads it).
    """
    p = Path(path)
    if p.is_dir():
        p = p / JSON_NAME
    if not p.is_file():
        raise CircuitError(f"circuit file {path} does not exist")
    if p.stat().st_size > MAX_BYTES:
        raise CircuitError(f"{p} is too large to be a circuit file (over {MAX_BYTES >> 20} MiB)")
    doc = read_versioned_json(p, FORMAT, FORMAT_VERSION, "circuit", CircuitError)
    try:
        circuit = _from_doc(doc, p)
    except _Bad as bad:
        raise CircuitError(f"{p} is corrupt: {bad}") from None
    return circuit


def load_circuit_tensors(circuit: Circuit | str | Path) -> dict[str, torch.Tensor]:
    """The sidecar tensors of a circuit (empty if it has none), checked against the sha256 that
    circuit.json records; CircuitError if missing, unreadable or not the json's partner."""
    if not isinstance(circuit, Circuit):
        circuit = load_circuit(circuit)
    file = circuit.sidecar_path
    if file is None or circuit.sidecar is None:
        return {}
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise CircuitError(f"circuit sidecar {file} is unreadable: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != circuit.sidecar.sha256:
        raise CircuitError(
            f"circuit sidecar {file} does not match its circuit.json (sha256 differs): "
            f"the two were not written together"
        )
    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise CircuitError(f"circuit sidecar {file} is unreadable: {_first_line(exc)}") from None


class _Bad(Exception):
    """One problem in a circuit document (becomes the CircuitError's message)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "an object": lambda v: isinstance(v, dict),
    "an object or null": lambda v: v is None or isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a string": lambda v: isinstance(v, str),
    "a non-empty string": lambda v: isinstance(v, str) and v != "",
    "an integer": _integer,
    "an integer or null": lambda v: v is None or _integer(v),
    "a finite number": _finite,
    "a finite number or null": lambda v: v is None or _finite(v),
}


def _need(doc: dict[str, Any], key: str, kind: str, where: str) -> Any:
    """doc[key], required to be of `kind` (a key of _TYPES); `where` prefixes the key in errors."""
    if key not in doc:
        raise _Bad(f"missing {where}{key}")
    value = doc[key]
    if not _TYPES[kind](value):
        raise _Bad(f"{where}{key} must be {kind}, not {_show(value)}")
    return value


def _show(value: Any) -> str:
    """A short one-line rendering of a bad value for an error message."""
    if isinstance(value, list | dict) and len(value) > 8:
        return f"{type(value).__name__} of {len(value)}"
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        text = repr(value) if isinstance(value, float) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _from_doc(doc: dict[str, Any], p: Path) -> Circuit:
    values = _check_content(doc)
    return Circuit(**values, path=p, sidecar=_sidecar(doc, p))


def _check_content(doc: dict[str, Any]) -> dict[str, Any]:
    """Check everything but the sidecar file; returns the Circuit fields' values."""
    content = [f for f in fields(Circuit) if "json" in f.metadata]
    known = {f.name for f in content} | {"format", "format_version", "tensors"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise _Bad(f"unknown key {unknown[0]!r}")
    values = {f.name: _need(doc, f.name, f.metadata["json"], "") for f in content}
    _need(doc, "tensors", "an object or null", "")
    circuit = Circuit(**values)
    _check_model(circuit.model)
    _check_task(circuit.task)
    if circuit.ablation not in ABLATIONS:
        raise _Bad(f"ablation must be one of {', '.join(ABLATIONS)}, not {_show(circuit.ablation)}")
    names = _check_nodes(circuit.nodes)
    _check_edges(circuit, names)
    _check_calibration(circuit.calibration)
    for key in circuit.losses:
        _need(circuit.losses, key, "a finite number or null", "losses.")
    for key in circuit.wall_time_s:
        _need(circuit.wall_time_s, key, "a finite number", "wall_time_s.")
    for key, value in circuit.counts.items():
        if not (_integer(value) or isinstance(value, dict)):
            raise _Bad(f"counts.{key} must be an integer or an object, not {_show(value)}")
    return values


def _sidecar(doc: dict[str, Any], p: Path) -> Sidecar | None:
    tensors = _need(doc, "tensors", "an object or null", "")
    if tensors is None:
        return None
    file = _need(tensors, "file", "a string", "tensors.")
    sha = _need(tensors, "sha256", "a string", "tensors.")
    if set(tensors) != {"file", "sha256"}:
        raise _Bad(f"unknown key {sorted(set(tensors) - {'file', 'sha256'})[0]!r} in tensors")
    if not _SIDECAR_NAME.fullmatch(file):
        raise _Bad(f"tensors.file must be a .safetensors file name beside it, not {_show(file)}")
    if not _SHA256.fullmatch(sha):
        raise _Bad(f"tensors.sha256 must be 64 lowercase hex digits, not {_show(sha)}")
    sidecar = p.parent / file
    if not sidecar.is_file():
        raise _Bad(f"its sidecar {file} is missing")
    # A sidecar that is a link out of the circuit's directory is not this circuit's.
    if sidecar.resolve().parent != p.resolve().parent:
        raise _Bad(f"its sidecar {file} resolves outside the circuit's directory")
    return Sidecar(file, sha)


def _check_model(model: dict[str, Any]) -> None:
    _need(model, "path", "a string", "model.")
    digest = _need(model, "content_hash", "a string", "model.")
    if not _SHA256.fullmatch(digest):
        raise _Bad(f"model.content_hash must be 64 lowercase hex digits, not {_show(digest)}")
    _need(model, "step", "an integer or null", "model.")
    _need(model, "config", "an object", "model.")


def _check_task(task: dict[str, Any]) -> None:
    _need(task, "name", "a non-empty string", "task.")
    _need(task, "description", "a string", "task.")
    _need(task, "split_sizes", "an object", "task.")
    _need(task, "seed", "an integer", "task.")
    _need(task, "n_truncated", "an integer", "task.")
    for i, cand in enumerate(_need(task, "candidates", "a list", "task.")):
        if not isinstance(cand, dict):
            raise _Bad(f"task.candidates[{i}] must be an object, not {_show(cand)}")
        token = _need(cand, "id", "an integer", f"task.candidates[{i}].")
        if token < 0:
            raise _Bad(f"task.candidates[{i}].id must be a token id, not {token}")
        _need(cand, "text", "a string", f"task.candidates[{i}].")


def _check_nodes(nodes: list[Any]) -> set[str]:
    names: set[str] = set()
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]."
        if not isinstance(node, dict):
            raise _Bad(f"nodes[{i}] must be an object, not {_show(node)}")
        name = _need(node, "name", "a string", where)
        parsed = parse_node_name(name)
        if parsed is None:
            raise _Bad(f"{where}name {_show(name)} is not a node name like 0.mlp.post_act.460")
        if name in names:
            raise _Bad(f"node {name} is listed twice")
        names.add(name)
        location, index = parsed
        expected = {"location": location, "index": index, "layer": int(name.split(".")[0]),
                    "kind": node_kind(location)}  # fmt: skip
        for key, value in expected.items():
            got = _need(node, key, "an integer" if isinstance(value, int) else "a string", where)
            if got != value:
                raise _Bad(f"{where}{key} is {_show(got)} but the name {name} says {_show(value)}")
        _need(node, "mask_score", "a finite number", where)
        _need(node, "ablation_value", "a finite number or null", where)
    return names


def _check_edges(c: Circuit, names: set[str]) -> None:
    def node(v: Any) -> bool:
        return isinstance(v, str) and v in names

    def like(pattern: re.Pattern[str]) -> Callable[[Any], bool]:
        return lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None

    checks = {  # key: (source ok, target ok, has a weight)
        "edges": (node, node, True),
        "residual_links": (node, node, False),
        "embed_edges": (like(_EMBED_SOURCE), like(_CHANNEL), True),
        "unembed_edges": (like(_CHANNEL), like(_UNEMBED_TARGET), True),
    }
    for key, (source_ok, target_ok, weighted) in checks.items():
        for i, edge in enumerate(getattr(c, key)):
            if not isinstance(edge, list) or len(edge) != (3 if weighted else 2):
                shape = "[source, target, weight]" if weighted else "[write node, read node]"
                raise _Bad(f"{key}[{i}] must be {shape}, not {_show(edge)}")
            if not (source_ok(edge[0]) and target_ok(edge[1])):
                what = "nodes of this circuit" if source_ok is node else "token and channel names"
                raise _Bad(
                    f"{key}[{i}] joins {_show(edge[0])} and {_show(edge[1])}, "
                    f"which are not both {what}"
                )
            if weighted and not _finite(edge[2]):
                raise _Bad(f"{key}[{i}] weight must be a finite number, not {_show(edge[2])}")


def _check_calibration(cal: dict[str, Any]) -> None:
    scale = _need(cal, "scale", "a finite number", "calibration.")
    shift = _need(cal, "shift", "a finite number", "calibration.")
    _need(cal, "shift_applies_to", "a string", "calibration.")
    if not 0 < scale <= FLOAT32_MAX:
        raise _Bad(f"calibration.scale must be positive and at most {FLOAT32_MAX:.3g}, not {scale}")
    if abs(shift) > FLOAT32_MAX:
        raise _Bad(f"calibration.shift must be at most {FLOAT32_MAX:.3g} in size, not {shift}")
