"""The artifacts the viewer serves: models and circuits found under one directory.

- Every path a request names is relative to the artifacts directory and must resolve inside it
  (`resolve`: 403 outside, 404 missing), symlinks included.
- Models are checkpoint directories (`<run>/checkpoint/config.json` with the checkpoint
  marker); circuits are `*.json` files with the circuit marker anywhere below.
- Loaded models live in a small LRU (2 by default), keyed by the checkpoint and its weights'
  mtime, so a checkpoint rewritten by a running training is reloaded. Each `ModelHandle` keeps
  the viewer's caches for its model (pretraining activations, means, task batches).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from sparsecircuits.checkpoint import (
    CHECKPOINT_DIR,
    Loaded,
    content_hash,
    load_checkpoint,
    read_meta,
)
from sparsecircuits.errors import CheckpointError, SparseCircuitsError
from sparsecircuits.tasks import SplitSizes, get_task
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.tasks.evaluate import load_task_batch
from sparsecircuits.viewer.circuit_file import CircuitFile, is_circuit_file, read_circuit
from sparsecircuits.viewer.node_stats import (
    CorpusActivations,
    StatsConfig,
    token_strings,
    val_tokens,
)

logger = logging.getLogger(__name__)

MAX_SCAN_DEPTH = 6
MAX_SCAN_DIRS = 5000
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}
MAX_TASK_EXAMPLES = 256


class PathOutsideError(SparseCircuitsError):
    """A requested path that leaves the artifacts directory (HTTP 403)."""


class NotFoundError(SparseCircuitsError):
    """A requested model, circuit or node that does not exist (HTTP 404)."""


class ModelHandle:
    """A loaded checkpoint plus the viewer's lazily computed caches for it."""

    def __init__(self, loaded: Loaded, ref: str, stats: StatsConfig):
        self.loaded = loaded
        self.ref = ref
        self.stats_cfg = stats
        self.strings = token_strings(loaded.tokenizer)
        self._corpus: CorpusActivations | None = None
        self._batches: dict[tuple[str, int], tuple[TaskBatch, tuple[str, str]]] = {}
        self._circuit_means: dict[Path, dict[str, Tensor] | None] = {}
        self._hash: str | None = None
        self._cached_means: dict[str, Any] | None = None

    @property
    def model(self):
        return self.loaded.model

    @property
    def corpus(self) -> CorpusActivations:
        if self._corpus is None:
            tokens = val_tokens(self.loaded, self.stats_cfg.windows)
            self._corpus = CorpusActivations(self.loaded.model, tokens, self.stats_cfg)
        return self._corpus

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = weights_hash(self.loaded.path)
        return self._hash

    def task_batch(self, task: str, n: int) -> tuple[TaskBatch, tuple[str, str]]:
        """The first n val examples of a task (encoded for this model) and its class names."""
        if not 1 <= n <= MAX_TASK_EXAMPLES:
            raise SparseCircuitsError(f"n must be between 1 and {MAX_TASK_EXAMPLES}, got {n}")
        key = (task, n)
        if key not in self._batches:
            t = get_task(task)
            batch = load_task_batch(
                t, self.loaded.tokenizer, "val", n, self.loaded.config.model.n_ctx,
                SplitSizes(train=0, val=n, test=0),
            )
            self._batches[key] = (batch, tuple(t.class_names))
        return self._batches[key]

    def means(self, circuit: CircuitFile | None = None) -> tuple[dict[str, Tensor], str]:
        """Mean activation per location, and where it comes from.

        The circuit's own ablation means (its sidecar) when it has usable ones, so an ablation
        here matches the pruner's; else the pruner's on-disk mean cache for this model; else
        the means over the viewer's scanned pretraining windows.
        """
        if circuit is not None and circuit.means_file is not None:
            means = self._load_circuit_means(circuit.means_file)
            if means and len(means) == len(self.loaded.model.location_width):
                return means, f"circuit sidecar {circuit.means_file.name}"
        means = self._pruner_means()
        if means is not None:
            return means, f"pruner's mean cache {self._cached_means['file'].name}"
        return self.corpus.means(), f"{len(self.corpus.tokens)} pretraining val windows"

    def _load_circuit_means(self, path: Path) -> dict[str, Tensor] | None:
        if path not in self._circuit_means:
            widths = self.loaded.model.location_width
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as exc:
                logger.warning("viewer: ignoring means sidecar %s: %s", path, exc)
                tensors = {}
            self._circuit_means[path] = _means_from(tensors, widths)
        return self._circuit_means[path]

    def _pruner_means(self) -> dict[str, Tensor] | None:
        """The pruner's on-disk mean cache for this model, if it has computed one."""
        if self._cached_means is None:
            self._cached_means = {}
            try:
                from sparsecircuits.circuits.ablation import MEANS_FORMAT, default_cache_dir
            except ImportError:
                return None
            widths = self.loaded.model.location_width
            for file in sorted(default_cache_dir().glob(f"{self.content_hash}-*.safetensors")):
                try:
                    with safe_open(str(file), "pt") as f:
                        meta = f.metadata() or {}
                    if meta.get("format") != MEANS_FORMAT:
                        continue
                    means = _means_from(load_file(str(file)), widths)
                except (SafetensorError, OSError, ValueError):
                    continue
                if means is not None and len(means) == len(widths):
                    self._cached_means = {"means": means, "file": file}
                    break
        return self._cached_means.get("means")


def _means_from(tensors: dict[str, Tensor], widths: dict[str, int]) -> dict[str, Tensor] | None:
    """Means per location from a tensor file (keys `<location>` or `mean.<location>`)."""
    means = {}
    for key, t in tensors.items():
        loc = key[len("mean."):] if key.startswith("mean.") else key
        if loc in widths and t.dim() == 1 and t.numel() == widths[loc]:
            means[loc] = t.float()
    return means or None


def model_summary(checkpoint: Path) -> dict[str, Any]:
    """What the model picker shows, from config.json alone (no weights loaded)."""
    meta = read_meta(checkpoint)
    cfg = meta.get("run_config", {})
    m = cfg.get("model", {}) if isinstance(cfg, dict) else {}
    s = cfg.get("sparsity", {}) if isinstance(cfg, dict) else {}
    return {
        "step": meta.get("step"),
        "val_loss": meta.get("val_loss"),
        "n_layer": m.get("n_layer"),
        "d_model": m.get("d_model"),
        "weight_fraction": s.get("weight_fraction"),
    }


def is_checkpoint_dir(path: Path) -> bool:
    try:
        read_meta(path)
    except CheckpointError:
        return False
    return (path / "model.safetensors").is_file()


def load_handle(checkpoint: Path, ref: str, stats: StatsConfig) -> ModelHandle:
    return ModelHandle(load_checkpoint(checkpoint), ref, stats)


def find_circuit_model(
    circuit: CircuitFile, root: Path | None, models: dict[str, Path] | None = None
) -> tuple[Path, list[str]]:
    """The checkpoint a circuit was found in, and warnings (moved model, changed weights).

    Tried in order: the path written in the file (relative to the file, to `root`, to the
    working directory), a run directory above the file, a model under `root` with the same
    content hash. With a `root`, only checkpoints inside it are accepted.
    """
    candidates: list[Path] = []
    if circuit.model_path:
        p = Path(circuit.model_path)
        if p.is_absolute():
            candidates.append(p)
        else:
            candidates += [circuit.path.parent / p] + ([root / p] if root else []) + [Path.cwd() / p]
    for parent in circuit.path.parents:
        candidates.append(parent)
        if root is not None and parent.resolve() == root.resolve():
            break
    warnings: list[str] = []
    for cand in candidates:
        for ckpt in (cand / CHECKPOINT_DIR, cand):
            if not is_checkpoint_dir(ckpt):
                continue
            if root is not None and not _inside(ckpt, root):
                continue
            return ckpt.resolve(), hash_warnings(circuit, ckpt)
    if circuit.model_hash and models:
        for ckpt in models.values():
            if weights_hash(ckpt) == circuit.model_hash:
                warnings.append(f"model found by content hash at {ckpt} (the file names "
                                f"{circuit.model_path})")
                return ckpt.resolve(), warnings
    raise NotFoundError(
        f"cannot find the model of circuit {circuit.path.name} ({circuit.model_path or 'no path'})"
        + (" inside the artifacts directory" if root is not None else "; pass --model")
    )


@lru_cache(maxsize=32)
def _hash_of(ckpt: Path, mtime_ns: int) -> str:
    return content_hash(ckpt)


def weights_hash(ckpt: Path) -> str:
    """content_hash, remembered per (checkpoint, weights mtime): hashing is not free."""
    ckpt = ckpt.resolve()
    return _hash_of(ckpt, (ckpt / "model.safetensors").stat().st_mtime_ns)


def hash_warnings(circuit: CircuitFile, ckpt: Path) -> list[str]:
    if circuit.model_hash and weights_hash(ckpt) != circuit.model_hash:
        return ["the model's weights changed since this circuit was found (content hash "
                "differs): numbers may not match the circuit file"]
    return []


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


@dataclass
class Scan:
    models: dict[str, Path]
    """Model id (run directory relative to the root) -> checkpoint directory."""
    circuits: dict[str, Path]
    """Circuit id (file path relative to the root) -> file."""


class Workspace:
    """Models and circuits under an artifacts directory, with a small cache of loaded models."""

    def __init__(self, root: str | Path, stats: StatsConfig | None = None, max_models: int = 2):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SparseCircuitsError(f"artifacts directory {root} does not exist")
        self.stats = stats or StatsConfig()
        self.max_models = max_models
        self._models: OrderedDict[tuple[Path, int], ModelHandle] = OrderedDict()
        self.lock = threading.RLock()
        """Held around every model computation: torch on a few cores gains nothing from
        concurrent requests, and the caches are not thread-safe."""

    # --- paths -----------------------------------------------------------------------------
    def resolve(self, ref: str) -> Path:
        """A request's relative path -> a path inside the root (PathOutsideError otherwise)."""
        if not isinstance(ref, str) or not ref or "\x00" in ref or len(ref) > 1000:
            raise SparseCircuitsError(f"malformed path {ref!r:.80}")
        if Path(ref).is_absolute() or ref.startswith("~"):
            raise PathOutsideError(f"path {ref!r} must be relative to the artifacts directory")
        path = (self.root / ref).resolve()
        if not _inside(path, self.root):
            raise PathOutsideError(f"path {ref!r} is outside the artifacts directory")
        if not path.exists():
            raise NotFoundError(f"{ref!r} does not exist in the artifacts directory")
        return path

    def task(self, name: str) -> str:
        """A task named in a request: a built-in name, or a .jsonl file inside the root."""
        if name.endswith(".jsonl"):
            return str(self.resolve(name))
        return name

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix() or "."

    # --- discovery ---------------------------------------------------------------------------
    def scan(self) -> Scan:
        models: dict[str, Path] = {}
        circuits: dict[str, Path] = {}
        root_depth = len(self.root.parts)
        for visited, (dirpath, dirnames, filenames) in enumerate(os.walk(self.root)):
            if visited >= MAX_SCAN_DIRS:  # e.g. served from a home directory: stay responsive
                logger.warning("viewer: stopped scanning %s after %d directories", self.root,
                               MAX_SCAN_DIRS)
                break
            here = Path(dirpath)
            if "config.json" in filenames and is_checkpoint_dir(here):
                run = here.parent if here.name == CHECKPOINT_DIR else here
                models[self.relative(run)] = here
                dirnames[:] = []  # nothing of interest inside a checkpoint
                continue
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d not in SKIP_DIRS
                and len(here.parts) - root_depth < MAX_SCAN_DEPTH
            )
            for name in sorted(filenames):
                if name.endswith(".json") and is_circuit_file(here / name):
                    circuits[self.relative(here / name)] = here / name
        return Scan(models, circuits)

    def listing(self) -> dict[str, Any]:
        """Models and circuits for the pickers (unreadable circuits listed with their error)."""
        scan = self.scan()
        models = []
        for ref, ckpt in sorted(scan.models.items()):
            try:
                models.append({"id": ref, **model_summary(ckpt)})
            except CheckpointError as exc:
                models.append({"id": ref, "error": str(exc)})
        circuits = []
        for ref, path in sorted(scan.circuits.items()):
            try:
                c = read_circuit(path)
            except SparseCircuitsError as exc:
                circuits.append({"id": ref, "error": str(exc)})
                continue
            circuits.append({
                "id": ref, "task": c.task, "nodes": len(c.nodes), "edges": len(c.edges),
                "model_path": c.model_path, "ablation": c.ablation, "losses": c.losses,
            })
        return {"root": str(self.root), "models": models, "circuits": circuits}

    # --- loading ------------------------------------------------------------------------------
    def model(self, ref: str) -> ModelHandle:
        path = self.resolve(ref)
        for ckpt in (path / CHECKPOINT_DIR, path):
            if is_checkpoint_dir(ckpt):
                return self._handle(ckpt)
        raise NotFoundError(f"{ref!r} is not a model (no checkpoint there)")

    def _handle(self, ckpt: Path) -> ModelHandle:
        ckpt = ckpt.resolve()
        key = (ckpt, (ckpt / "model.safetensors").stat().st_mtime_ns)
        with self.lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            ref = self.relative(ckpt.parent if ckpt.name == CHECKPOINT_DIR else ckpt)
            handle = load_handle(ckpt, ref, self.stats)
            self._models[key] = handle
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return handle

    def circuit(self, ref: str) -> CircuitFile:
        path = self.resolve(ref)
        if not path.is_file():
            raise NotFoundError(f"{ref!r} is not a circuit file")
        return read_circuit(path)

    def circuit_model(self, circuit: CircuitFile) -> tuple[ModelHandle, list[str]]:
        ckpt, warnings = find_circuit_model(circuit, self.root, self.scan().models)
        return self._handle(ckpt), warnings

