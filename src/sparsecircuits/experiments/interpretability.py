"""Monosemanticity, measured: explanation scores of a sparse model's nodes, the matched dense
model's neurons, SAE latents on the dense model, and circuit nodes (docs/autointerp.md).

Every unit is explained by the offline explainer and scored by detection on held-out
contexts (`sparsecircuits.autointerp`), at the same locations in both models (default: every
MLP neuron, `*.mlp.post_act`, plus the residual channels at the SAE's hook point, where the
SAE's latents are the third contender). A circuit file adds its nodes as a group of their own.
Results come from (and go to) the explanation cache, so a re-run is cheap.

Output in `out/`: results.json (every unit's result and per-group summaries), table.md, and
interpretability.png (the score distributions per model and location).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.autointerp import AutointerpError
from sparsecircuits.autointerp.corpus import ExplainConfig, build_corpus
from sparsecircuits.autointerp.offline import OfflineExplainer
from sparsecircuits.autointerp.report import GOOD, summarize
from sparsecircuits.autointerp.run import explain_units, open_cache
from sparsecircuits.autointerp.units import (
    location_units,
    match_hook_points,
    parse_unit,
    sae_id,
    sae_units,
    sample_units,
)
from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuits.circuit_file import load_circuit
from sparsecircuits.fileformat import atomic_write_text, write_figure, write_json
from sparsecircuits.sae.sae_file import check_fits, load_sae

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interpretability:
    """Everything that defines the experiment."""

    sparse: Path = Path("models/demo")
    """The weight-sparse model."""
    dense: Path = Path("models/demo-dense")
    """The dense model matched to it (same architecture and data, equal val loss)."""
    sae: Path | None = None
    """An SAE trained on the dense model: its latents, and both models' channels at its
    hook point, are scored too."""
    at: tuple[str, ...] = ("*.mlp.post_act",)
    """Locations compared in both models (globs over hook points)."""
    circuits: tuple[Path, ...] = ()
    """Circuit files of either model: their nodes form one group per circuit."""
    sample: int | None = None
    """At most this many units per location and model (seeded); None: all."""
    corpus: ExplainConfig = field(default_factory=ExplainConfig)
    cache_dir: Path | None = None
    """Explanation cache (default ~/.cache/sparsecircuits/explanations)."""


def run_interpretability(exp: Interpretability, out: Path) -> dict[str, Any]:
    """Run the experiment into `out`; returns what results.json holds."""
    cfg = exp.corpus.validate()
    explainer = OfflineExplainer()
    sae = load_sae(exp.sae) if exp.sae is not None else None
    circuits = [load_circuit(c) for c in exp.circuits]
    groups: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    claimed: set[int] = set()
    corpus, corpus_key = None, None
    for role, path in (("sparse", exp.sparse), ("dense", exp.dense)):
        loaded = load_checkpoint(path)
        model = loaded.model
        # the matched models share data and tokenizer: label the text once
        data = loaded.meta.get("data") if isinstance(loaded.meta.get("data"), dict) else {}
        key = (loaded.tokenizer.to_str(), data.get("fingerprint"), model.cfg.n_ctx)
        if key != corpus_key:
            corpus, corpus_key = build_corpus(loaded, cfg), key
        models[role] = {"path": str(path), "content_hash": loaded.content_hash,
                        "val_loss": loaded.meta.get("val_loss")}  # fmt: skip
        locations = match_hook_points(model, exp.at)
        if sae is not None and sae.location not in locations:
            locations.append(sae.location)
        cache = open_cache(loaded, explainer, cfg, exp.cache_dir)
        plan: list[tuple[str, str, list]] = [
            (role, loc, sample_units(location_units(model, [loc]), exp.sample, cfg.seed))
            for loc in locations
        ]  # fmt: skip
        if sae is not None and role == "dense":
            check_fits(sae, loaded)
            plan.append(("dense SAE", sae.location,
                         sample_units(sae_units(sae, sae_id(sae)), exp.sample, cfg.seed)))  # fmt: skip
        for k, circuit in enumerate(circuits):
            if circuit.model.get("content_hash") == loaded.content_hash:
                claimed.add(k)
                units = [parse_unit(model, n) for n in circuit.node_names]
                plan.append((f"{role} circuit", f"{circuit.task['name']} circuit", units))
        # one call per kind of unit: the model's own units are recorded in few passes
        model_units = list({u.name: u for _, _, units in plan for u in units if not u.sae}.values())
        log.info("interpretability: %s, %d units", role, len(model_units))
        results = explain_units(loaded, model_units, explainer, cache, cfg, corpus=corpus)
        latents = [u for _, _, units in plan for u in units if u.sae]
        if latents:
            results |= explain_units(loaded, latents, explainer, cache, cfg, sae, corpus=corpus)
        for name, location, units in plan:
            summary = summarize(results[u.name] for u in units)
            groups.append({"model": name, "location": location, **summary,
                           "results": [results[u.name] for u in units]})  # fmt: skip
    unclaimed = [str(exp.circuits[k]) for k in range(len(circuits)) if k not in claimed]
    if unclaimed:
        raise AutointerpError(f"circuit {unclaimed[0]} belongs to neither model (its content "
                              "hash matches neither checkpoint)")  # fmt: skip
    doc = {"experiment": "interpretability", "models": models,
           "sae": str(exp.sae) if exp.sae is not None else None,
           "corpus": cfg.to_dict(), "sample": exp.sample, "good": GOOD, "groups": groups}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", doc)
    atomic_write_text(out / "table.md", table(doc))
    figure(doc, out / "interpretability.png")
    return doc


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(doc: dict[str, Any]) -> str:
    """The per-group summary as a Markdown table."""
    lines = [f"| model | location | units | scored | median detection | fraction >= "
             f"{doc['good']} | median correlation |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for g in doc["groups"]:
        lines.append(f"| {g['model']} | {g['location']} | {g['units']} | {g['scored']} | "
                     f"{_num(g['median_detection'])} | {_num(g['fraction_good'])} | "
                     f"{_num(g['median_correlation'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


COLORS = {"sparse": "tab:blue", "dense": "tab:red", "dense SAE": "tab:green",
          "sparse circuit": "tab:cyan", "dense circuit": "tab:orange"}  # fmt: skip


def figure(doc: dict[str, Any], path: Path) -> Path:
    """Box plots of the detection scores, one per (model, location), colored by model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in doc["groups"] if g["detection"]]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(groups) + 2), 4.8))
    if groups:
        box = ax.boxplot([g["detection"] for g in groups], patch_artist=True, widths=0.6)
        for patch, g in zip(box["boxes"], groups, strict=True):
            patch.set_facecolor(COLORS.get(g["model"], "lightgray"))
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(groups) + 1),
                      [f"{g['model']}\n{g['location']}" for g in groups], rotation=60,
                      ha="right", fontsize=7)  # fmt: skip
    ax.axhline(doc["good"], color="gray", ls="--", lw=1, label=f"detection {doc['good']}")
    ax.axhline(0.5, color="gray", ls=":", lw=1, label="chance")
    ax.set_ylabel("detection balanced accuracy (held out)")
    ax.set_title("How interpretable is each unit? Offline explanations, scored by detection")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return write_figure(path, fig)
