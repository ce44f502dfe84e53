"""What one node does, for the node panel: activations on pretraining text and on the task.

- `CorpusActivations`: a fixed set of val windows from the model's own pretraining data, and
  (lazily, cached) the activations on them: per location for one panel at a time (the app),
  or only the nodes asked for, all in one pass over the windows (`preload`, the report: one
  forward per batch of windows instead of one per location). Scanning is bounded (64 windows
  of n_ctx tokens by default) so a panel is ready in well under a second on CPU.
- `record_nodes`: the activations of many nodes on a batch, from one forward.
- `corpus_stats`: top- and bottom-activating snippets with per-token activations (the "which
  token turns this on" view), a histogram and the mean.
- `task_activations`: the node's value at the choice position of task examples, per class.
- `logit_effect`: for a residual write node, its direct path to the logits.
- `text_activations`: the node on arbitrary text.

Every function returns plain JSON-ready dicts; the web app and the static report share them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.data.prepare import open_prepared, prepare_data
from sparsecircuits.data.shards import TokenShard, eval_starts
from sparsecircuits.errors import DataError, SparseCircuitsError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Recorder
from sparsecircuits.model.locations import UnknownNodeError, parse_node
from sparsecircuits.tasks.encoding import TaskBatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatsConfig:
    """How much text the node panels scan, and how much of it they show."""

    windows: int = 64
    """Val windows of n_ctx tokens scanned once per (model, location)."""
    top_k: int = 8
    """Snippets shown for the top and for the bottom activations."""
    before: int = 12
    """Tokens of context shown before the activating token."""
    after: int = 4
    """Tokens shown after it."""
    min_context: int = 8
    """Snippets are not taken from a window's first tokens: a window starts mid-file, so
    there the model has seen too little context to behave as it does on real text."""
    bins: int = 30
    """Histogram bins over the node's nonzero range."""
    cached_locations: int = 6
    """Locations whose activations stay in memory per model."""
    batch_size: int = 16
    """Windows per forward pass."""


def check_node(model: GPT, node: str) -> tuple[str, int]:
    """Parse a node name and check that the model has it.

    SparseCircuitsError for a malformed name, UnknownNodeError for one the model lacks.
    """
    location, index = parse_node(node)
    width = model.location_width.get(location)
    if width is None:
        raise UnknownNodeError(f"unknown node {node!r}: the model has no location {location!r}")
    if index >= width:
        raise UnknownNodeError(f"unknown node {node!r}: {location} has {width} nodes")
    return location, index


@lru_cache(maxsize=4)
def _token_strings(tokenizer_json: str) -> tuple[str, ...]:
    tok = Tokenizer.from_str(tokenizer_json)
    return tuple(
        tok.decode([i], skip_special_tokens=False) or (tok.id_to_token(i) or "")
        for i in range(tok.get_vocab_size())
    )


def token_strings(tokenizer: Tokenizer) -> tuple[str, ...]:
    """The text of every token id (a lone byte of a multi-byte character shows as U+FFFD)."""
    return _token_strings(tokenizer.to_str())


def _round(values: Tensor | Sequence[float]) -> list[float]:
    t = torch.as_tensor(values, dtype=torch.float64)
    return [float(f"{v:.4g}") for v in t.tolist()]


def val_tokens(loaded: Loaded, n_windows: int) -> Tensor:
    """`n_windows` fixed val windows [n, n_ctx] of the model's pretraining data."""
    shard = val_shard(loaded)
    n_ctx = loaded.config.model.n_ctx
    n = max(1, min(n_windows, len(shard) // n_ctx))
    return shard.windows(eval_starts(len(shard), n_ctx, n), n_ctx)  # [n, n_ctx]


def val_shard(loaded: Loaded) -> TokenShard:
    """The val shard of the model's pretraining data (at least one window long)."""
    data_meta = loaded.meta.get("data") if isinstance(loaded.meta.get("data"), dict) else {}
    prepared = None
    root = data_meta.get("root") if data_meta else None
    if isinstance(root, str) and Path(root).is_dir():
        try:
            prepared = open_prepared(root)
        except DataError as exc:
            logger.info("viewer: recorded data dir unusable (%s); preparing again", exc)
    if prepared is None:
        prepared = prepare_data(loaded.config.data, loaded.config.model.vocab_size,
                                tokenizer=loaded.tokenizer)
    shard = TokenShard(prepared.shards["val"])
    n_ctx = loaded.config.model.n_ctx
    if len(shard) < n_ctx:
        raise DataError(f"the val shard has {len(shard)} tokens, fewer than one window")
    return shard


@torch.no_grad()
def record_nodes(
    model: GPT, tokens: Tensor, nodes: Sequence[tuple[str, int]], batch_size: int = 16
) -> dict[tuple[str, int], Tensor]:
    """Activations [N, T] of each (location, index) on tokens [N, T], from one forward per
    `batch_size` rows (recording only the locations the nodes are at)."""
    wanted: dict[str, list[int]] = {}
    for location, index in nodes:
        if index not in wanted.setdefault(location, []):
            wanted[location].append(index)
    device = next(model.parameters()).device
    parts: dict[str, list[Tensor]] = {location: [] for location in wanted}
    for start in range(0, len(tokens), batch_size):
        rec = Recorder(list(wanted))
        model(tokens[start : start + batch_size].to(device), rec.hooks)
        for location, indices in wanted.items():
            parts[location].append(rec.acts[location][..., indices].float().cpu())  # [b, T, k]
    out: dict[tuple[str, int], Tensor] = {}
    for location, indices in wanted.items():
        acts = torch.cat(parts[location])  # [N, T, k]
        for j, index in enumerate(indices):
            out[(location, index)] = acts[..., j].contiguous()
    return out


class CorpusActivations:
    """Pretraining windows of one model and its activations on them, cached per location (and
    per node for the nodes `preload` recorded)."""

    def __init__(self, model: GPT, tokens: Tensor, cfg: StatsConfig):
        self.model = model
        self.tokens = tokens  # [N, T]
        self.cfg = cfg
        self._acts: OrderedDict[str, Tensor] = OrderedDict()
        self._nodes: dict[tuple[str, int], Tensor] = {}

    def preload(self, nodes: Sequence[tuple[str, int]]) -> None:
        """Record every node not yet known in one pass over the windows (kept until dropped
        with the handle: [N, T] floats per node, 32 KB for 64 windows of 128 tokens)."""
        missing = [n for n in nodes if n not in self._nodes and n[0] not in self._acts]
        if missing:
            self._nodes.update(record_nodes(self.model, self.tokens, missing, self.cfg.batch_size))

    def node(self, location: str, index: int) -> Tensor:
        """Activations [N, T] of one node."""
        found = self._nodes.get((location, index))
        return found if found is not None else self.location(location)[..., index]

    @torch.no_grad()
    def location(self, location: str) -> Tensor:
        """Activations [N, T, width] at one location (computed once, LRU-cached)."""
        if location in self._acts:
            self._acts.move_to_end(location)
            return self._acts[location]
        device = next(self.model.parameters()).device
        parts = []
        for start in range(0, len(self.tokens), self.cfg.batch_size):
            rec = Recorder([location])
            self.model(self.tokens[start : start + self.cfg.batch_size].to(device), rec.hooks)
            parts.append(rec.acts[location].float().cpu())
        acts = torch.cat(parts)  # [N, T, width]
        self._acts[location] = acts
        while len(self._acts) > self.cfg.cached_locations:
            self._acts.popitem(last=False)
        return acts


def _pick(values: Tensor, order: Tensor, k: int, cfg: StatsConfig, keep) -> list[tuple]:
    """Up to k (row, pos) from `order` whose snippet windows do not overlap an earlier pick."""
    _, T = values.shape
    before, after = cfg.before, cfg.after
    taken: dict[int, list[tuple[int, int]]] = {}
    out = []
    for flat in order.tolist():
        row, pos = divmod(flat, T)
        v = float(values[row, pos])
        if not keep(v):
            break
        if pos < min(cfg.min_context, T - 1):
            continue
        lo, hi = pos - before, pos + after
        if any(lo <= b and a <= hi for a, b in taken.get(row, [])):
            continue
        taken.setdefault(row, []).append((lo, hi))
        out.append((row, pos, v))
        if len(out) == k:
            break
    return out


def _snippet(tokens: Tensor, acts: Tensor, row: int, pos: int, cfg: StatsConfig, strings) -> dict:
    lo, hi = max(0, pos - cfg.before), min(tokens.shape[1], pos + cfg.after + 1)
    return {
        "tokens": [strings[i] for i in tokens[row, lo:hi].tolist()],
        "acts": _round(acts[row, lo:hi]),
        "focus": pos - lo,
        "value": float(f"{float(acts[row, pos]):.4g}"),
    }


def histogram(values: Tensor, bins: int) -> dict[str, Any]:
    """Counts of the nonzero values over `bins` equal bins; exact zeros counted apart (AbsTopK
    zeroes most of a node's values, which would drown every other bar)."""
    flat = values.flatten().double()
    nonzero = flat[flat != 0]
    out: dict[str, Any] = {"total": int(flat.numel()), "zeros": int(flat.numel() - nonzero.numel())}
    if nonzero.numel() == 0:
        out.update(edges=[], counts=[])
        return out
    lo, hi = float(nonzero.min()), float(nonzero.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(nonzero, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    out.update(edges=_round(edges), counts=[int(c) for c in counts.tolist()])
    return out


def corpus_stats(
    corpus: CorpusActivations, strings: Sequence[str], location: str, index: int
) -> dict[str, Any]:
    """Top/bottom snippets, histogram, mean and scale of one node over the scanned windows."""
    cfg = corpus.cfg
    acts = corpus.node(location, index)  # [N, T]
    flat = acts.flatten()
    top = _pick(acts, flat.argsort(descending=True), cfg.top_k, cfg, lambda v: v > 0)
    bottom = _pick(acts, flat.argsort(), cfg.top_k, cfg, lambda v: v < 0)
    return {
        "windows": int(acts.shape[0]),
        "tokens": int(flat.numel()),
        "mean": float(f"{float(flat.double().mean()):.5g}"),
        "scale": float(f"{float(flat.abs().max()):.4g}"),
        "active_fraction": float(f"{float((flat != 0).double().mean()):.4g}"),
        "histogram": histogram(acts, cfg.bins),
        "top": [_snippet(corpus.tokens, acts, r, p, cfg, strings) for r, p, _ in top],
        "bottom": [_snippet(corpus.tokens, acts, r, p, cfg, strings) for r, p, _ in bottom],
    }


@torch.no_grad()
def record_node(model: GPT, tokens: Tensor, location: str, index: int) -> Tensor:
    """The node's activation at every position of tokens [B, T] -> [B, T]."""
    rec = Recorder([location])
    device = next(model.parameters()).device
    model(tokens.to(device), rec.hooks)
    return rec.acts[location][..., index].float().cpu()


def task_activations(
    model: GPT,
    batch: TaskBatch,
    class_names: Sequence[str],
    strings: Sequence[str],
    location: str,
    index: int,
    context_tokens: int | None = None,
    acts: Tensor | None = None,
) -> dict[str, Any]:
    """The node at the choice position of each example, per class, with two examples each
    (their last `context_tokens` tokens; None: the whole context). `acts` [N, T]: the node on
    `batch.tokens` when the caller recorded it already (`record_nodes`)."""
    if acts is None:
        acts = record_node(model, batch.tokens, location, index)  # [N, T]
    last = acts[torch.arange(len(batch)), batch.lengths - 1]  # [N]
    classes = []
    for label in (0, 1):
        rows = (batch.label == label).nonzero().flatten().tolist()
        values = last[rows]
        examples = []
        for r in rows[:2]:
            n = int(batch.lengths[r])
            lo = 0 if context_tokens is None else max(0, n - context_tokens)
            examples.append({
                "tokens": [strings[i] for i in batch.tokens[r, lo:n].tolist()],
                "acts": _round(acts[r, lo:n]),
                "focus": n - 1 - lo,
                "correct": strings[int(batch.correct_id[r])],
                "wrong": strings[int(batch.wrong_id[r])],
            })
        classes.append({
            "label": label,
            "name": class_names[label] if label < len(class_names) else f"class {label}",
            "values": _round(values),
            "mean": float(f"{float(values.double().mean()):.4g}") if rows else None,
            "examples": examples,
        })
    return {"n": len(batch), "classes": classes}


def logit_effect(
    model: GPT, strings: Sequence[str], location: str, index: int, k: int = 10,
    candidates: Sequence[int] = (),
) -> dict[str, Any]:
    """Direct effect on the logits of a residual write: unembed[:, c] * final_norm.weight[c].

    Approximate: it ignores the final RMSNorm's division by the residual's scale and everything
    later layers do with the channel. Other node kinds do not write the residual stream.
    """
    if not location.endswith(".resid_delta"):
        return {"direct": False, "note": "not a direct writer: only residual writes "
                "(resid_delta nodes) reach the unembedding without another layer"}
    with torch.no_grad():
        column = model.unembed.weight[:, index] * model.final_norm.weight[index]  # [vocab]
        column = column.float().cpu()
    order = column.argsort(descending=True)
    up = [{"token": strings[i], "value": float(f"{float(column[i]):.4g}")} for i in order[:k].tolist()]
    down = [
        {"token": strings[i], "value": float(f"{float(column[i]):.4g}")}
        for i in order.flip(0)[:k].tolist()
    ]
    return {
        "direct": True,
        "note": "approximate: unembed[:, c] x final_norm.weight[c], ignoring the final norm's "
        "rescaling and later layers",
        "up": up,
        "down": down,
        "candidates": [
            {"token": strings[i], "value": float(f"{float(column[i]):.4g}")} for i in candidates
        ],
    }


def text_activations(
    loaded: Loaded, text: str, location: str, index: int
) -> dict[str, Any]:
    """The node on every token of `text` (cut to the last n_ctx tokens)."""
    ids = loaded.tokenizer.encode(text, add_special_tokens=False).ids
    if not ids:
        raise SparseCircuitsError("the text encodes to no tokens")
    n_ctx = loaded.config.model.n_ctx
    truncated = max(0, len(ids) - n_ctx)
    ids = ids[-n_ctx:]
    acts = record_node(loaded.model, torch.tensor([ids]), location, index)[0]  # [T]
    strings = token_strings(loaded.tokenizer)
    return {
        "tokens": [strings[i] for i in ids],
        "acts": _round(acts),
        "scale": float(f"{float(acts.abs().max()):.4g}"),
        "truncated": truncated,
    }
