"""Explain and score units, reusing the cache: what `sparsecircuits explain` runs.

Units are grouped by location (and SAE): one pass of the model over the corpus per location,
its activations oriented (`scoring.orient`) and handed to the explainer, whose results go to
the cache, saved after every location (and, for the LLM explainer, after every unit), so a
killed run loses little and a re-run resumes (docs/autointerp.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from sparsecircuits.autointerp.cache import ExplanationCache
from sparsecircuits.autointerp.corpus import Corpus, ExplainConfig, build_corpus
from sparsecircuits.autointerp.scoring import Orientation, orient
from sparsecircuits.autointerp.units import Unit, corpus_activations, unit_activations
from sparsecircuits.checkpoint import Loaded
from sparsecircuits.sae.sae_file import SAEHandle
from sparsecircuits.viewer.node_stats import record_nodes

log = logging.getLogger(__name__)
RECORD_UNITS = 1024
"""Model units recorded per pass over the corpus (each keeps [windows, n_ctx] floats)."""


class Explainer(Protocol):
    """Turns a location's activations into per-unit results (`offline`, `llm`)."""

    kind: str

    def settings(self) -> dict[str, Any]: ...

    def run(self, corpus: Corpus, units: Sequence[Unit], acts_e: Tensor, acts_h: Tensor,
            orients: Sequence[Orientation], cfg: ExplainConfig
            ) -> Iterator[tuple[Unit, dict[str, Any]]]: ...  # fmt: skip


def _groups(units: Sequence[Unit]) -> list[list[Unit]]:
    groups: dict[tuple[str, bool], list[Unit]] = {}
    for u in units:
        groups.setdefault((u.location, u.sae), []).append(u)
    return list(groups.values())


def _record_ahead(loaded: Loaded, corpus: Corpus, groups: Sequence[Sequence[Unit]]
                  ) -> dict[tuple[str, int], Tensor]:  # fmt: skip
    """Activations [N, T] of the model units of the next groups, up to RECORD_UNITS of them,
    from one pass over the corpus (`node_stats.record_nodes`: one forward for many locations)."""
    wanted: list[tuple[str, int]] = []
    for group in groups:
        if group[0].sae:
            continue
        if wanted and len(wanted) + len(group) > RECORD_UNITS:
            break
        wanted += [(u.location, u.index) for u in group]
    return record_nodes(loaded.model, corpus.tokens, wanted)


def open_cache(loaded: Loaded, explainer: Explainer, cfg: ExplainConfig,
               cache_dir=None) -> ExplanationCache:  # fmt: skip
    """The cache of this model, explainer and settings."""
    settings = {**explainer.settings(), "corpus": cfg.to_dict()}
    return ExplanationCache(cache_dir, loaded.content_hash, str(loaded.path), settings)


def explain_units(
    loaded: Loaded, units: Sequence[Unit], explainer: Explainer, cache: ExplanationCache,
    cfg: ExplainConfig, sae: SAEHandle | None = None, save_every_unit: bool = False,
    corpus: Corpus | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Results of every unit ({name: result}), from the cache where it has them. `corpus`:
    one `build_corpus(loaded, cfg)` made already (built here when needed otherwise)."""
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for u in units:
        found = cache.done(u.name)
        if found is not None:
            results[u.name] = found
        else:
            todo.append(u)
    if not todo:
        log.info("explain: all %d units cached (%s)", len(units), cache.path)
        return results
    log.info("explain: %d of %d units cached; explaining %d", len(results), len(units), len(todo))
    if corpus is None:
        corpus = build_corpus(loaded, cfg)
    acts_cache = corpus_activations(loaded.model, corpus.tokens)
    held_rows = torch.as_tensor(corpus.held_out.rows)
    recorded: dict[tuple[str, int], Tensor] = {}
    groups = _groups(todo)
    for k, group in enumerate(groups):
        t0 = time.perf_counter()
        if group[0].sae:
            acts = unit_activations(acts_cache, group, sae).float()  # [N, T, U]
        else:
            if (group[0].location, group[0].index) not in recorded:
                recorded = _record_ahead(loaded, corpus, groups[k:])
            acts = torch.stack([recorded.pop((u.location, u.index)) for u in group], -1)
        acts_e = corpus.flat(acts, corpus.explain)  # [M, U]
        orients = orient(acts_e)
        signs = torch.tensor([o.sign for o in orients])  # [U]
        acts_h = acts[held_rows, corpus.skip :] * signs  # [n_rows, L, U]
        for unit, result in explainer.run(corpus, group, acts_e * signs, acts_h, orients, cfg):
            result = {"unit": unit.name, **result}
            cache.put(unit.name, result)
            results[unit.name] = result
            if save_every_unit:
                cache.save()
        cache.save()
        log.info("explain: %s (%d units) in %.1fs", group[0].location, len(group),
                 time.perf_counter() - t0)  # fmt: skip
    return {u.name: results[u.name] for u in units}


def explain_request(
    checkpoint, at=None, nodes=(), sae=None, sample: int | None = None,
    cfg: ExplainConfig | None = None, llm=None, cache_dir=None, threads: int = 0,
) -> tuple[dict[str, dict[str, Any]], Path]:  # fmt: skip
    """Load, select units, explain (offline, or with `llm`: LLMSettings) and cache: what the
    `explain` command does. Returns the results and the cache file."""
    from sparsecircuits.autointerp.units import sae_id, select_units
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.sae.sae_file import check_fits, load_sae

    cfg = (cfg or ExplainConfig()).validate()
    if threads:
        torch.set_num_threads(threads)
    loaded = load_checkpoint(checkpoint)
    handle = sae_hash = None
    if sae is not None:
        handle = load_sae(sae)
        check_fits(handle, loaded)
        sae_hash = sae_id(handle)
    units = select_units(loaded.model, at, nodes, handle, sae_hash, sample, cfg.seed)
    explainer: Explainer
    if llm is None:
        from sparsecircuits.autointerp.offline import OfflineExplainer

        explainer = OfflineExplainer()
    else:
        from sparsecircuits.autointerp.llm import LLMExplainer

        explainer = LLMExplainer(llm)
    cache = open_cache(loaded, explainer, cfg, cache_dir)
    try:
        results = explain_units(loaded, units, explainer, cache, cfg, handle,
                                save_every_unit=llm is not None)  # fmt: skip
    finally:
        close = getattr(explainer, "close", None)
        if close is not None:
            close()
    return results, cache.path
