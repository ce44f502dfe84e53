"""The text units are explained on: val windows of the model's own data, split in two halves.

Even windows form the explain split (an explainer sees only these), odd windows the held-out
split (the scorer uses only these). Each window's tokens carry the predicates of
`predicates.label_file`, computed over the whole file around them (windows start mid-file, and
"inside a string" depends on what came before). A window's first `skip` tokens are left out of
both splits: there the model has seen too little context to behave as on real text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from sparsecircuits.autointerp import AutointerpError
from sparsecircuits.autointerp.predicates import PredicateTable, label_file
from sparsecircuits.autointerp.text import decode, token_bytes
from sparsecircuits.checkpoint import Loaded
from sparsecircuits.data.shards import eval_starts
from sparsecircuits.data.tokenizer import eot_id
from sparsecircuits.viewer.node_stats import token_strings, val_shard


@dataclass(frozen=True)
class ExplainConfig:
    """How much text units are explained and scored on (part of the cache key)."""

    windows: int = 256
    """Val windows of n_ctx tokens: even ones explain, odd ones are held out for scoring."""
    skip: int = 8
    """First tokens of every window left out of both splits (too little context)."""
    span: int = 16
    """Tokens per detection context (a held-out window is cut into such spans)."""
    contexts: int = 50
    """Held-out contexts per class (activating / not) the detection score uses."""
    min_count: int = 20
    """A predicate (or conjunction) must hold on at least this many explain tokens."""
    seed: int = 0
    """Seed of the context sampling."""

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> ExplainConfig:
        if self.windows < 2:
            raise AutointerpError(f"windows must be at least 2 (one per split), got {self.windows}")
        for name in ("span", "contexts", "min_count"):
            if getattr(self, name) < 1:
                raise AutointerpError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.skip < 0:
            raise AutointerpError(f"skip must be >= 0, got {self.skip}")
        return self


@dataclass(frozen=True)
class Split:
    """One half of the windows."""

    rows: np.ndarray  # [n] indices into Corpus.tokens
    predicates: PredicateTable  # matrix [n * (n_ctx - skip), P]: positions skip.. of each row


@dataclass(frozen=True)
class Corpus:
    """Windows, their token strings, and the predicates of each position."""

    tokens: Tensor  # [N, n_ctx] token ids
    strings: tuple[str, ...]  # text of every token id
    skip: int
    explain: Split
    held_out: Split

    def flat(self, acts: Tensor, split: Split) -> Tensor:
        """Activations [N, n_ctx, ...] -> the split's positions [n * (n_ctx - skip), ...]."""
        return acts[torch.as_tensor(split.rows), self.skip :].flatten(0, 1)


def _file_bounds(ids: np.ndarray, eot: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive, before the EOT) of every file of a shard."""
    ends = np.flatnonzero(ids == eot)
    starts = np.concatenate([[0], ends + 1])
    ends = np.concatenate([ends, [len(ids)]])
    return starts, ends


def build_corpus(loaded: Loaded, cfg: ExplainConfig) -> Corpus:
    """The explain and held-out windows of `loaded`'s val data, labelled with predicates."""
    cfg.validate()
    shard = val_shard(loaded)
    n_ctx = loaded.config.model.n_ctx
    if cfg.skip >= n_ctx:
        raise AutointerpError(f"skip {cfg.skip} leaves nothing of {n_ctx}-token windows")
    n = max(2, min(cfg.windows, len(shard) // n_ctx))
    starts = eval_starts(len(shard), n_ctx, n)
    tokens = shard.windows(starts, n_ctx)  # [n, n_ctx]
    ids = np.asarray(shard.tokens)
    eot = eot_id(loaded.tokenizer)
    f_starts, f_ends = _file_bounds(ids, eot)
    table = token_bytes(loaded.tokenizer)
    labels_at: dict[int, list[str]] = {}  # shard position -> predicate names
    done: set[int] = set()
    for s in starts.tolist():
        first = int(np.searchsorted(f_starts, s, side="right")) - 1
        last = int(np.searchsorted(f_starts, s + n_ctx - 1, side="right")) - 1
        for f in range(first, last + 1):
            if f in done:
                continue
            done.add(f)
            a, b = int(f_starts[f]), int(f_ends[f])
            for offset, names in enumerate(label_file(decode(ids[a:b].tolist(), table))):
                labels_at[a + offset] = names
    positions = starts[:, None] + np.arange(cfg.skip, n_ctx)  # [n, n_ctx - skip]
    rows_e, rows_h = np.arange(0, n, 2), np.arange(1, n, 2)
    lab_e = [labels_at.get(p, []) for p in positions[rows_e].flatten().tolist()]
    lab_h = [labels_at.get(p, []) for p in positions[rows_h].flatten().tolist()]
    pred_e = PredicateTable.from_labels(lab_e, min_count=cfg.min_count)
    pred_h = PredicateTable.from_labels(lab_h, names=pred_e.names)
    return Corpus(tokens, token_strings(loaded.tokenizer), cfg.skip, Split(rows_e, pred_e),
                  Split(rows_h, pred_h))  # fmt: skip
