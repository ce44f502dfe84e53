"""What a pruned node is replaced by: one interface, three kinds (PAPER_NOTES §6).

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
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.errors import CheckpointError, CircuitError
from sparsecircuits.model.hooks import Recorder

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
        from tokenizers import Tokenizer

        from sparsecircuits.data.prepare import prepare_data
        from sparsecircuits.data.shards import TokenShard, iter_eval_batches

        cfg = self.loaded.config
        data = prepare_data(cfg.data, cfg.model.vocab_size, tokenizer=self.loaded.tokenizer)
        data_tok = Tokenizer.from_file(str(data.tokenizer_path))
        if data_tok.to_str() != self.loaded.tokenizer.to_str():
            raise CheckpointError(
                f"checkpoint {self.loaded.path} has a different tokenizer than its pretraining "
                f"data ({data.root}); ablation statistics would use the wrong token ids"
            )
        shard = TokenShard(data.shards["train"])
        n_ctx = cfg.model.n_ctx
        batch = next(iter_eval_batches(shard, self.n_windows, n_ctx, 1))  # [n, n_ctx + 1]
        return batch[:, :-1]


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


def cached_means(
    model: torch.nn.Module,
    windows: PretrainingWindows,
    key: str,
    cache_dir: Path | None,
) -> dict[str, Tensor]:
    """Means from the cache file for `key` (checkpoint hash + windows), or computed and saved."""
    cache_dir = cache_dir or default_cache_dir()
    path = cache_dir / f"{key}-{windows.n_windows}.safetensors"
    device = next(model.parameters()).device
    if path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            logger.warning("means cache %s unreadable (%s); recomputing", path, exc)
        else:
            widths = getattr(model, "location_width", {})
            ok = meta.get("format") == MEANS_FORMAT and meta.get("version") == MEANS_VERSION
            ok = (
                ok
                and set(tensors) == set(widths)
                and all(tensors[loc].shape == (w,) for loc, w in widths.items())
            )
            if ok:
                return {loc: t.to(device) for loc, t in tensors.items()}
            logger.warning("means cache %s does not fit this model; recomputing", path)
    means = record_means(model, windows.get())
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(
            {loc: m.cpu().contiguous() for loc, m in means.items()},
            str(tmp),
            metadata={"format": MEANS_FORMAT, "version": MEANS_VERSION, "key": key},
        )
        tmp.replace(path)
    except OSError as exc:  # a read-only home must not stop pruning
        logger.warning("could not cache means in %s: %s", cache_dir, exc)
    return means


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
