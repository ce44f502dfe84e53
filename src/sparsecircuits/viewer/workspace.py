"""The artifacts the viewer serves: models and circuits found under one directory.

- The viewer reads nothing outside the artifacts directory. Every path, whether a request
  names it or a file names it (a circuit's model, sidecar and task file), is checked by
  `resolve_inside` after all symlinks are resolved (403 outside, 404 missing or a symlink
  loop); a checkpoint directory counts only if every link in it stays inside too.
- A file that cannot be read is listed with the reason (never a path outside the root), and
  the rest of the listing is unaffected.
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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import Tensor

from sparsecircuits.checkpoint import (
    CHECKPOINT_DIR,
    Loaded,
    content_hash,
    load_checkpoint,
    read_meta,
)
from sparsecircuits.circuits.ablation import MeanAblation, pretraining_means
from sparsecircuits.circuits.circuit_file import is_circuit_file, load_circuit_tensors
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.tasks import SplitSizes, get_task
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.tasks.evaluate import load_task_batch
from sparsecircuits.viewer.circuit_adapter import ViewedCircuit, read_circuit
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


def resolve_inside(root: Path, path: str | Path, name: str) -> Path:
    """`path` (absolute, or relative to `root`) with every symlink resolved, checked to lie
    inside `root` (itself already resolved).

    PathOutsideError if it leaves the root, NotFoundError for a symlink loop; messages name
    the path only as `name`, so an answer never reveals where a link points.
    """
    try:
        real = (root / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: RuntimeError up to Python 3.12
        raise NotFoundError(f"{name} cannot be resolved (symlink loop)") from None
    if not real.is_relative_to(root):
        raise PathOutsideError(f"{name} is outside the artifacts directory")
    return real


def is_inside(root: Path, path: str | Path) -> bool:
    try:
        resolve_inside(root, path, "path")
    except SparseCircuitsError:
        return False
    return True


def checkpoint_inside(root: Path, path: Path) -> Path | None:
    """`path` resolved, if it is a checkpoint directory inside `root` whose links (config,
    weights, tokenizer, ...) all stay inside too; None otherwise. Opens nothing outside."""
    try:
        real = resolve_inside(root, path, "checkpoint")
        if not real.is_dir():
            return None
        with os.scandir(real) as entries:
            for entry in entries:
                if entry.is_symlink() and not is_inside(root, entry.path):
                    return None
    except (SparseCircuitsError, OSError):
        return None
    return real if is_checkpoint_dir(real) else None


class ModelHandle:
    """A loaded checkpoint plus the viewer's lazily computed caches for it."""

    def __init__(self, loaded: Loaded, ref: str, stats: StatsConfig, root: Path | None = None):
        self.loaded = loaded
        self.ref = ref
        self.root = root
        """The artifacts directory task files must lie in (None: the report, any file)."""
        self.stats_cfg = stats
        self.strings = token_strings(loaded.tokenizer)
        self._corpus: CorpusActivations | None = None
        self._batches: dict[tuple[str, int], tuple[TaskBatch, tuple[str, str]]] = {}
        self._circuit_means: dict[Path, MeanAblation | None] = {}
        self._hash: str | None = None
        self._pruner_means: tuple[dict[str, Tensor], str] | None = None

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
            t = get_task(self._task_file(task) if task.endswith(".jsonl") else task)
            batch = load_task_batch(
                t, self.loaded.tokenizer, "val", n, self.loaded.config.model.n_ctx,
                SplitSizes(train=0, val=n, test=0),
            )
            self._batches[key] = (batch, tuple(t.class_names))
        return self._batches[key]

    def _task_file(self, task: str) -> str:
        """A .jsonl task (as a request or a circuit names it) resolved inside the root."""
        if self.root is None:
            return task
        try:
            return str(resolve_inside(self.root, task, f"task file {Path(task).name!r}"))
        except SparseCircuitsError as exc:
            raise TaskError(str(exc)) from None

    def means(self, circuit: ViewedCircuit | None = None) -> tuple[dict[str, Tensor], str]:
        """Mean activation per location, and where it comes from.

        The circuit's own ablation means (in its sidecar, checked against circuit.json's
        sha256) when it was pruned with mean ablation, so an ablation here matches the
        pruner's; else the pruner's means for this model (`ablation.pretraining_means`: its
        on-disk cache, or computed the same way).
        """
        if circuit is not None and circuit.sidecar is not None:
            if circuit.sidecar not in self._circuit_means:
                tensors = load_circuit_tensors(circuit.circuit)
                widths = self.loaded.model.location_width
                self._circuit_means[circuit.sidecar] = MeanAblation.from_tensors(tensors, widths)
            saved = self._circuit_means[circuit.sidecar]
            if saved is not None:
                return saved.means, f"circuit sidecar {circuit.sidecar.name}"
        if self._pruner_means is None:
            self._pruner_means = pretraining_means(
                self.loaded, self.content_hash, PruneConfig().mean_windows
            )
        return self._pruner_means


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
    except (SparseCircuitsError, OSError, ValueError, RecursionError):
        return False
    return (path / "model.safetensors").is_file()


def load_handle(
    checkpoint: Path, ref: str, stats: StatsConfig, root: Path | None = None
) -> ModelHandle:
    return ModelHandle(load_checkpoint(checkpoint), ref, stats, root)


def find_circuit_model(
    circuit: ViewedCircuit, root: Path | None, models: dict[str, Path] | None = None
) -> tuple[Path, list[str]]:
    """The checkpoint a circuit was found in, and warnings (moved model, changed weights).

    Tried in order: the path written in the file (relative to the file, to `root`, to the
    working directory), a run directory above the file, a model under `root` with the same
    content hash. With a `root`, only checkpoints inside it are accepted.
    """
    root = root.resolve() if root is not None else None
    candidates: list[Path] = []
    if circuit.model_path:
        p = Path(circuit.model_path)
        if p.is_absolute():
            candidates.append(p)
        else:
            candidates += [circuit.path.parent / p] + ([root / p] if root else []) + [Path.cwd() / p]
    for parent in circuit.path.parents:
        candidates.append(parent)
        if root is not None and parent == root:
            break
    warnings: list[str] = []
    for cand in candidates:
        for ckpt in (cand / CHECKPOINT_DIR, cand):
            # Confinement first: a path outside the root is never opened, not even its config.
            found = checkpoint_inside(root, ckpt) if root is not None else (
                ckpt.resolve() if is_checkpoint_dir(ckpt) else None)
            if found is not None:
                return found, hash_warnings(circuit, found)
    if circuit.model_hash and models:
        for ckpt in models.values():
            if weights_hash(ckpt) == circuit.model_hash:
                where = ckpt.relative_to(root) if root is not None else ckpt
                warnings.append(f"model found by content hash at {where} (the file names "
                                f"{_shown(circuit.model_path, root)})")
                return ckpt.resolve(), warnings
    raise NotFoundError(
        f"cannot find the model of circuit {circuit.path.name} "
        f"({_shown(circuit.model_path, root) if circuit.model_path else 'no path'})"
        + (" inside the artifacts directory" if root is not None else "; pass --model")
    )


def _shown(model_path: str, root: Path | None) -> str:
    """A circuit's model path as an answer may show it: never an absolute path outside root."""
    if root is None or not Path(model_path).is_absolute() or is_inside(root, model_path):
        return model_path
    return "a path outside the artifacts directory"


@lru_cache(maxsize=32)
def _hash_of(ckpt: Path, mtime_ns: int) -> str:
    return content_hash(ckpt)


def weights_hash(ckpt: Path) -> str:
    """content_hash, remembered per (checkpoint, weights mtime): hashing is not free."""
    ckpt = ckpt.resolve()
    return _hash_of(ckpt, (ckpt / "model.safetensors").stat().st_mtime_ns)


def hash_warnings(circuit: ViewedCircuit, ckpt: Path) -> list[str]:
    if circuit.model_hash and weights_hash(ckpt) != circuit.model_hash:
        return ["the model's weights changed since this circuit was found (content hash "
                "differs): numbers may not match the circuit file"]
    return []


@dataclass
class Scan:
    models: dict[str, Path]
    """Model id (run directory relative to the root) -> checkpoint directory."""
    circuits: dict[str, Path]
    """Circuit id (file path relative to the root) -> file (links resolved, inside the root)."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Id -> why, for *.json files that cannot be looked at (a link out of the root, a loop)."""
    bad_models: dict[str, str] = field(default_factory=dict)
    """Run id -> why, for `checkpoint` directories that are not a usable checkpoint."""


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
        path = resolve_inside(self.root, ref, f"path {ref!r}")
        if not path.exists():
            raise NotFoundError(f"{ref!r} does not exist in the artifacts directory")
        return path

    def task(self, name: str) -> str:
        """A task named in a request: a built-in name, or a .jsonl file inside the root."""
        if name.endswith(".jsonl"):
            return str(self.resolve(name))
        return name

    def relative(self, path: Path) -> str:
        """The id of a path inside the root (links are not followed: an id names the link)."""
        return path.relative_to(self.root).as_posix() or "."

    # --- discovery ---------------------------------------------------------------------------
    def scan(self) -> Scan:
        models: dict[str, Path] = {}
        circuits: dict[str, Path] = {}
        unreadable: dict[str, str] = {}
        bad_models: dict[str, str] = {}
        root_depth = len(self.root.parts)
        for visited, (dirpath, dirnames, filenames) in enumerate(os.walk(self.root)):
            if visited >= MAX_SCAN_DIRS:  # e.g. served from a home directory: stay responsive
                logger.warning("viewer: stopped scanning %s after %d directories", self.root,
                               MAX_SCAN_DIRS)
                break
            here = Path(dirpath)  # os.walk does not follow directory links: always inside
            if "config.json" in filenames and checkpoint_inside(self.root, here) is not None:
                run = here.parent if here.name == CHECKPOINT_DIR else here
                models[self.relative(run)] = here
                dirnames[:] = []  # nothing of interest inside a checkpoint
                continue
            if here.name == CHECKPOINT_DIR and "config.json" in filenames:
                bad_models[self.relative(here.parent)] = (
                    "not a usable checkpoint (a file is missing or unreadable, or links outside "
                    "the artifacts directory)")
                dirnames[:] = []
                continue
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d not in SKIP_DIRS
                and len(here.parts) - root_depth < MAX_SCAN_DEPTH
            )
            for name in sorted(filenames):
                if not name.endswith(".json"):
                    continue
                ref = self.relative(here / name)
                try:
                    real = resolve_inside(self.root, here / name, "the file it links to")
                    if is_circuit_file(real):
                        circuits[ref] = real
                except SparseCircuitsError as exc:
                    unreadable[ref] = str(exc)
                except Exception as exc:  # noqa: BLE001 - one odd file must not hide the rest
                    logger.warning("viewer: cannot look at %s: %r", ref, exc)
                    unreadable[ref] = f"cannot be read ({type(exc).__name__})"
        return Scan(models, circuits, unreadable, bad_models)

    def listing(self) -> dict[str, Any]:
        """Models and circuits for the pickers (unreadable circuits listed with their error)."""
        scan = self.scan()
        models = [{"id": ref, "error": why} for ref, why in scan.bad_models.items()]
        for ref, ckpt in scan.models.items():
            try:
                models.append({"id": ref, **model_summary(ckpt)})
            except Exception as exc:  # noqa: BLE001 - listed as unreadable, the rest still lists
                models.append({"id": ref, "error": self._reason(exc)})
        circuits = [{"id": ref, "error": why} for ref, why in scan.unreadable.items()]
        for ref, path in scan.circuits.items():
            try:
                c = self._read_circuit(path)
            except Exception as exc:  # noqa: BLE001 - listed as unreadable, the rest still lists
                circuits.append({"id": ref, "error": self._reason(exc)})
                continue
            circuits.append({
                "id": ref, "task": c.task, "nodes": len(c.nodes), "edges": len(c.edges),
                "model_path": c.model_path, "ablation": c.ablation, "losses": c.losses,
            })
        models.sort(key=lambda m: m["id"])
        circuits.sort(key=lambda c: c["id"])
        return {"root": str(self.root), "models": models, "circuits": circuits}

    def _reason(self, exc: Exception) -> str:
        """Why a file is unreadable, in one line, with paths inside the root made relative."""
        if not isinstance(exc, SparseCircuitsError):
            logger.warning("viewer: unreadable artifact: %r", exc)
            return f"cannot be read ({type(exc).__name__})"
        lines = str(exc).replace(f"{self.root}{os.sep}", "").splitlines()
        return lines[0] if lines else type(exc).__name__

    def _read_circuit(self, path: Path) -> ViewedCircuit:
        """The canonical reader, plus: the files the circuit names lie inside the root."""
        circuit = read_circuit(path)
        if circuit.sidecar is not None:
            resolve_inside(self.root, circuit.sidecar, "its tensors file")
        return circuit

    # --- loading ------------------------------------------------------------------------------
    def model(self, ref: str) -> ModelHandle:
        path = self.resolve(ref)
        for ckpt in (path / CHECKPOINT_DIR, path):
            found = checkpoint_inside(self.root, ckpt)
            if found is not None:
                return self._handle(found)
        raise NotFoundError(f"{ref!r} is not a model (no checkpoint there)")

    def _handle(self, ckpt: Path) -> ModelHandle:
        ckpt = ckpt.resolve()
        key = (ckpt, (ckpt / "model.safetensors").stat().st_mtime_ns)
        with self.lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            ref = self.relative(ckpt.parent if ckpt.name == CHECKPOINT_DIR else ckpt)
            handle = load_handle(ckpt, ref, self.stats, self.root)
            self._models[key] = handle
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return handle

    def circuit(self, ref: str) -> ViewedCircuit:
        path = self.resolve(ref)
        if not path.is_file():
            raise NotFoundError(f"{ref!r} is not a circuit file")
        return self._read_circuit(path)

    def circuit_model(self, circuit: ViewedCircuit) -> tuple[ModelHandle, list[str]]:
        ckpt, warnings = find_circuit_model(circuit, self.root, self.scan().models)
        return self._handle(ckpt), warnings

