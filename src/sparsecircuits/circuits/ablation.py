"""What a pruned node is replaced by: one interface, three kinds (docs/method.md §6).

- `mean` (the paper's default): the node's mean activation over the pretraining distribution
  (every position of `mean_windows` fixed windows of n_ctx tokens from the train shard).
  Computed once per checkpoint and cached on disk, keyed by the checkpoint's content hash
  (`~/.cache/sparsecircuits/means/<hash>-<windows>.safetensors`; never inside the checkpoint).
- `zero`: the value 0.
- `resample`: the node's activation at the same position in another, randomly drawn
  pretraining context. A bank of activations is recorded once; each example of a batch draws
  one bank row, shared by every location, so the replacement values of all pruned nodes come
  from one consistent forward pass of the other context.

All values are taken after AbsTopK, where the mask hooks act.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import Tensor

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.errors import CheckpointError, CircuitError
from sparsecircuits.fileformat import atomic_write_bytes
from sparsecircuits.model.hooks import Recorder

if TYPE_CHECKING:
    from sparsecircuits.data.shards import TokenShard

logger = logging.getLogger(__name__)

MEANS_FORMAT = "sparsecircuits.means"
MEANS_VERSION = "1"
RECORD_BATCH = 16  # windows per forward while recording statistics


class Ablation(ABC):
    """Replacement values for pruned nodes at every location."""

    kind: ClassVar[str]

    @abstractmethod
    def values(
        self, batch: int, seq: int, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """location -> replacement broadcastable to [batch, seq, width], for one forward."""

    def node_value(self, location: str, index: int) -> float | None:
        """A node's fixed replacement value, or None when it varies (resample)."""
        return None

    def tensors(self) -> dict[str, Tensor]:
        """Tensors worth saving next to a circuit (the means)."""
        return {}


class MeanAblation(Ablation):
    """a = mean activation over pretraining data: `means[location]` is [width]."""

    kind = "mean"

    def __init__(self, means: Mapping[str, Tensor]):
        self.means = dict(means)

    def values(self, batch, seq, generator=None):
        return self.means

    def node_value(self, location, index):
        return float(self.means[location][index])

    def tensors(self):
        return {f"mean.{loc}": m.detach().cpu().contiguous() for loc, m in self.means.items()}

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, Tensor], widths: Mapping[str, int]
    ) -> MeanAblation | None:
        """The mean ablation saved by `tensors()` (e.g. in a circuit's sidecar), or None if
        `tensors` holds no means; CircuitError if they do not fit a model of `widths`."""
        means = {k[len("mean.") :]: t for k, t in tensors.items() if k.startswith("mean.")}
        if not means:
            return None
        problem = means_problem(means, widths)
        if problem is not None:
            raise CircuitError(f"the saved ablation means do not fit this model: {problem}")
        return cls({loc: t.float() for loc, t in means.items()})


class ZeroAblation(Ablation):
    """a = 0."""

    kind = "zero"

    def __init__(self, widths: Mapping[str, int], device: torch.device | str = "cpu"):
        self.zeros = {loc: torch.zeros(w, device=device) for loc, w in widths.items()}

    def values(self, batch, seq, generator=None):
        return self.zeros

    def node_value(self, location, index):
        return 0.0


class ResampleAblation(Ablation):
    """a = the activation in a random other pretraining context: `bank[loc]` [n, seq, width]."""

    kind = "resample"

    def __init__(self, bank: Mapping[str, Tensor]):
        self.bank = dict(bank)
        first = next(iter(self.bank.values()))
        self.n, self.max_seq = int(first.shape[0]), int(first.shape[1])

    def values(self, batch, seq, generator=None):
        if seq > self.max_seq:
            raise CircuitError(f"resample bank holds {self.max_seq} positions, {seq} needed")
        device = next(iter(self.bank.values())).device
        rows = torch.randint(self.n, (batch,), generator=generator).to(device)  # [batch]
        return {loc: acts[rows, :seq] for loc, acts in self.bank.items()}


# ---------------------------------------------------------------------------- pretraining data


class PretrainingWindows:
    """Fixed windows [n, n_ctx] of a checkpoint's pretraining train shard, read on first use.

    The shard is found (or rebuilt) from the checkpoint's own data config; its tokenizer must
    be the checkpoint's, otherwise statistics would be computed on foreign token ids.
    """

    def __init__(self, loaded: Loaded, n_windows: int):
        self.loaded = loaded
        self.n_windows = n_windows
        self._windows: Tensor | None = None

    def get(self) -> Tensor:
        if self._windows is None:
            self._windows = self._read()
        return self._windows

    def _read(self) -> Tensor:
        from sparsecircuits.data.shards import iter_eval_batches

        shard = pretraining_shard(self.loaded, "train")
        n_ctx = self.loaded.config.model.n_ctx
        batch = next(iter_eval_batches(shard, self.n_windows, n_ctx, 1))  # [n, n_ctx + 1]
        return batch[:, :-1]


def pretraining_shard(loaded: Loaded, split: str = "train") -> TokenShard:
    """The `split` token shard of a checkpoint's pretraining data, in its own token ids.

    Found (or rebuilt) from the checkpoint's data config; CheckpointError if the data's
    tokenizer is not the checkpoint's (statistics would be computed on foreign token ids).
    """
    from tokenizers import Tokenizer

    from sparsecircuits.data.prepare import prepare_data
    from sparsecircuits.data.shards import TokenShard

    cfg = loaded.config
    data = prepare_data(cfg.data, cfg.model.vocab_size, tokenizer=loaded.tokenizer)
    data_tok = Tokenizer.from_file(str(data.tokenizer_path))
    if data_tok.to_str() != loaded.tokenizer.to_str():
        raise CheckpointError(
            f"checkpoint {loaded.path} has a different tokenizer than its pretraining "
            f"data ({data.root}); statistics would use the wrong token ids"
        )
    return TokenShard(data.shards[split])


@torch.no_grad()
def record_means(model: torch.nn.Module, windows: Tensor) -> dict[str, Tensor]:
    """Per-location mean activation [width] over every position of every window."""
    device = next(model.parameters()).device
    sums: dict[str, Tensor] = {}
    count = 0
    for start in range(0, len(windows), RECORD_BATCH):
        chunk = windows[start : start + RECORD_BATCH].to(device)  # [b, n_ctx]
        rec = Recorder(model.locations)
        model(chunk, hooks=rec.hooks)
        for loc, act in rec.acts.items():  # [b, n_ctx, width]
            s = act.double().sum(dim=(0, 1))
            sums[loc] = sums[loc] + s if loc in sums else s
        count += chunk.numel()
    return {loc: (s / count).float() for loc, s in sums.items()}


@torch.no_grad()
def record_bank(model: torch.nn.Module, windows: Tensor, seq: int) -> dict[str, Tensor]:
    """Per-location activations [n, seq, width] of the first `seq` positions of each window."""
    device = next(model.parameters()).device
    parts: dict[str, list[Tensor]] = {loc: [] for loc in model.locations}
    for start in range(0, len(windows), RECORD_BATCH):
        chunk = windows[start : start + RECORD_BATCH, :seq].to(device)
        rec = Recorder(model.locations)
        model(chunk, hooks=rec.hooks)
        for loc, act in rec.acts.items():
            parts[loc].append(act)
    return {loc: torch.cat(p) for loc, p in parts.items()}


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "sparsecircuits" / "means"


def means_problem(means: Mapping[str, Tensor], widths: Mapping[str, int]) -> str | None:
    """Why `means` cannot be a model's ablation means (one [width] float per location), or None."""
    if set(means) != set(widths):
        missing = sorted(set(widths) - set(means)) or sorted(set(means) - set(widths))
        return f"locations differ from the model's (e.g. {missing[0]})"
    for loc, width in widths.items():
        t = means[loc]
        if t.shape != (width,) or not t.is_floating_point():
            return f"{loc} is {t.dtype} {tuple(t.shape)}, not float ({width},)"
        if not bool(torch.isfinite(t).all()):
            return f"{loc} holds a non-finite value"
    return None


@dataclass(frozen=True)
class CachedMeans:
    """Means read from the on-disk cache."""

    means: dict[str, Tensor]
    """location -> mean activation [width], on the CPU."""
    file: Path
    """The cache file they came from."""


def load_cached_means(
    key: str,
    widths: Mapping[str, int],
    cache_dir: Path | None = None,
    n_windows: int | None = None,
) -> CachedMeans | None:
    """The cached means of checkpoint `key` (its content hash) over `n_windows` windows, or
    over the most windows cached when `n_windows` is None; None if there are none.

    Every check is made here, for the pruner and the viewer alike: a file that is unreadable,
    not a means file, of another version or key, or that does not fit `widths` is skipped with
    a warning (and the pruner recomputes it).
    """
    cache_dir = cache_dir or default_cache_dir()
    if n_windows is not None:
        files = [cache_dir / f"{key}-{n_windows}.safetensors"]
    else:
        counts = {f: f.stem.rpartition("-")[2] for f in cache_dir.glob(f"{key}-*.safetensors")}
        files = sorted((f for f, n in counts.items() if n.isascii() and n.isdigit()),
                       key=lambda f: -int(counts[f]))  # fmt: skip
    for file in files:
        if not file.is_file():
            continue
        try:
            with safe_open(str(file), "pt") as f:  # one open: metadata and tensors agree
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            logger.warning("means cache %s unreadable (%s)", file, exc)
            continue
        if (meta.get("format"), meta.get("version"), meta.get("key")) != (
            MEANS_FORMAT,
            MEANS_VERSION,
            key,
        ):
            logger.warning("means cache %s is not a %s v%s file for %s", file, MEANS_FORMAT,
                           MEANS_VERSION, key)  # fmt: skip
            continue
        problem = means_problem(tensors, widths)
        if problem is not None:
            logger.warning("means cache %s does not fit this model: %s", file, problem)
            continue
        return CachedMeans({loc: t.float() for loc, t in tensors.items()}, file)
    return None


def cached_means(
    model: torch.nn.Module,
    windows: PretrainingWindows,
    key: str,
    cache_dir: Path | None,
) -> dict[str, Tensor]:
    """Means from the cache file for `key` (checkpoint hash + windows), or computed and saved.

    Two runs at once on a missing or damaged entry both compute it and both write it, each
    through its own temporary file: the last rename wins, and either file is a good one.
    """
    cache_dir = cache_dir or default_cache_dir()
    device = next(model.parameters()).device
    found = load_cached_means(key, model.location_width, cache_dir, windows.n_windows)
    if found is not None:
        return {loc: t.to(device) for loc, t in found.means.items()}
    means = record_means(model, windows.get())
    data = save_safetensors(
        {loc: m.cpu().contiguous() for loc, m in means.items()},
        metadata={"format": MEANS_FORMAT, "version": MEANS_VERSION, "key": key},
    )
    try:
        atomic_write_bytes(cache_dir / f"{key}-{windows.n_windows}.safetensors", data)
    except OSError as exc:  # a read-only home must not stop pruning
        logger.warning("could not cache means in %s: %s", cache_dir, exc)
    return means


def pretraining_means(
    loaded: Loaded, key: str, n_windows: int, cache_dir: Path | None = None
) -> tuple[dict[str, Tensor], str]:
    """The pruner's mean ablation values for a checkpoint, and where they come from, for a
    reader that writes nothing (the viewer): the pruner's cache entry with the most windows,
    else computed as the pruner computes them, over `n_windows` pretraining windows."""
    found = load_cached_means(key, loaded.model.location_width, cache_dir)
    if found is not None:
        return found.means, f"pruner's mean cache {found.file.name}"
    means = record_means(loaded.model, PretrainingWindows(loaded, n_windows).get())
    return {loc: m.cpu() for loc, m in means.items()}, (
        f"{n_windows} pretraining windows (the pruner's mean ablation)"
    )


def build_ablation(
    kind: str,
    model: torch.nn.Module,
    windows: PretrainingWindows | None,
    seq: int,
    cache_key: str | None = None,
    cache_dir: Path | None = None,
) -> Ablation:
    """The ablation of `kind` for `model`; `seq` = longest sequence it will be asked for.

    `cache_key` (the checkpoint's content hash) enables the on-disk mean cache; without it the
    means are computed in memory (e.g. for a re-randomised control model).
    """
    device = next(model.parameters()).device
    if kind == "zero":
        return ZeroAblation(model.location_width, device)
    if windows is None:
        raise CircuitError(f"{kind} ablation needs pretraining data")
    if kind == "mean":
        if cache_key is None:
            return MeanAblation(record_means(model, windows.get()))
        return MeanAblation(cached_means(model, windows, cache_key, cache_dir))
    if kind == "resample":
        return ResampleAblation(record_bank(model, windows.get(), seq))
    raise CircuitError(f"unknown ablation {kind!r}; use mean, zero or resample")
