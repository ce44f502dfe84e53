"""Pruning after (SAE latents of a dense model) vs sparsity before (a weight-sparse model).

    1. The weight-sparse model: prune the task's nodes to the target (the ordinary pruner).
    2. The dense model matched to it, with one SAE per residual point: prune the SAEs' latents
       and error nodes to the same target with the same learned masks, search on k and
       calibration (`sae.circuit.SAEMaskLayout`: only the units differ).
    3. Both circuits: units, edges (sparse: nonzero weights between circuit nodes, `graph.py`;
       SAE: attribution edges between kept units of consecutive SAE points, `sae.circuit`),
       sufficiency and necessity on test (`circuits.validate.sufficiency_necessity`).
    4. Write results.json, table.md and sae_vs_sparse.png (docs/sae-circuits.md).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparsecircuits.checkpoint import Loaded, load_checkpoint
from sparsecircuits.circuits.ablation import PretrainingWindows
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.pipeline import CircuitContext
from sparsecircuits.circuits.pruner import PruneOutcome, Pruner
from sparsecircuits.circuits.task_data import TaskData, load_task_data
from sparsecircuits.circuits.validate import sufficiency_necessity
from sparsecircuits.errors import ConfigError, SAEError
from sparsecircuits.fileformat import atomic_write_text, write_figure, write_json
from sparsecircuits.sae.circuit import (
    ERROR_MODES,
    SAEMaskLayout,
    circuit_edges,
    sae_ablation,
    units_per_point,
)
from sparsecircuits.sae.sae_file import check_fits, load_sae

log = logging.getLogger(__name__)

EDGE_RULE_SPARSE = ("nonzero weight W[o, i] between two circuit nodes (docs/method.md §5); "
                    "embedding and unembedding edges not counted")  # fmt: skip
EDGE_RULE_SAE = ("pair of kept units (latents or error nodes) in consecutive SAE points whose "
                 "attribution w(u->d) = mean over examples of sum_t dm/dd_t . dd_t/du . (u - a_u) "
                 "is nonzero ('edges'), or >= {thr:g} x the largest |w| ('edges_thr')")  # fmt: skip


@dataclass(frozen=True)
class SAEVsSparse:
    """Everything that defines the comparison."""

    sparse: Path = Path("models/demo")
    """The weight-sparse model (checkpoint, run or zoo directory)."""
    dense: Path = Path("models/demo-dense")
    """The dense model matched to it."""
    saes: tuple[Path, ...] = tuple(
        Path(f"models/demo-dense/sae-{layer}.resid_post-k32") for layer in range(4)
    )
    """SAEs of the dense model, one per hook point."""
    task: str = "single_double_quote"
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(loss="two_way",
                                                                   target_loss=0.5))
    """Pruning options of both circuits (target, loss, steps, ablation, ...)."""
    errors: str = "node"
    """SAE error terms: 'node' (one prunable unit per SAE) or 'kept' (never ablated)."""
    edge_threshold: float = 0.01
    """SAE edges also counted at |w| >= this x the largest |w|."""
    edge_examples: int = 64
    """Test examples the SAE edge attributions are averaged over."""

    def validate(self) -> SAEVsSparse:
        if self.errors not in ERROR_MODES:
            raise ConfigError(f"--errors must be one of {', '.join(ERROR_MODES)}")
        if not 0 <= self.edge_threshold <= 1:
            raise ConfigError(f"edge threshold must be in [0, 1], got {self.edge_threshold}")
        if self.edge_examples < 1:
            raise ConfigError("edge examples must be >= 1")
        if not self.saes:
            raise ConfigError("give at least one SAE")
        if self.prune.ablation == "resample":
            raise ConfigError("SAE circuits support mean or zero ablation, not resample")
        return self


def load_saes(loaded: Loaded, paths: tuple[Path, ...]) -> dict[str, Any]:
    """hook point -> SAE, each checked against the dense model; SAEError for two at one point."""
    saes = {}
    for path in paths:
        handle = load_sae(path)
        check_fits(handle, loaded)
        if handle.location in saes:
            raise SAEError(f"two SAEs at {handle.location} ({path})")
        saes[handle.location] = handle.sae.to(next(loaded.model.parameters()).device).eval()
    return saes


def _validation_row(pruner: Pruner, data: TaskData, out: PruneOutcome) -> dict[str, Any]:
    v = sufficiency_necessity(pruner, data, out.unit_gates, out.scale, out.shift)
    return {
        "reached_target": out.reached,
        "val_loss": out.val_loss_before,
        "full_model_val": out.full_val_loss,
        "test_full_model": v["full_model"]["loss"],
        "test_sufficiency": v["sufficiency"]["loss"],
        "test_sufficiency_accuracy": v["sufficiency"]["accuracy"],
        "test_sufficiency_uncalibrated": v["sufficiency_uncalibrated"]["loss"],
        "test_necessity": v["necessity"]["loss"],
        "test_all_ablated": v["all_ablated"]["loss"],
        "necessity_fraction": v["necessity_fraction"],
        "sufficient": v["sufficient"],
        "k_search": [[k, val] for k, val in out.search.evaluations.items()],
    }


def prune_sparse(exp: SAEVsSparse, progress: bool) -> dict[str, Any]:
    """The weight-sparse model's node circuit."""
    loaded = load_checkpoint(exp.sparse)
    ctx = CircuitContext(loaded, exp.prune)
    data = load_task_data(exp.task, loaded.tokenizer, exp.prune, loaded.model.cfg.n_ctx)
    pruner = Pruner(loaded.model, ctx.ablation(), exp.prune, progress)
    t0 = time.perf_counter()
    out = pruner.prune(data)
    graph = ctx.graph(out.nodes, data)
    row = {
        "model": str(exp.sparse),
        "units_kind": "nodes (channels/neurons at every node location)",
        "units": len(out.nodes),
        "unit_pool": pruner.layout.n_units,
        "edges": len(graph.edges),
        "edges_thr": None,
        "edge_rule": EDGE_RULE_SPARSE,
        **_validation_row(pruner, data, out),
    }
    row["seconds"] = time.perf_counter() - t0
    return row


def prune_sae(exp: SAEVsSparse, loaded: Loaded, saes: dict[str, Any],
              progress: bool) -> dict[str, Any]:  # fmt: skip
    """The dense model's SAE-latent circuit (`saes` from `load_saes(loaded, exp.saes)`)."""
    model = loaded.model
    layout = SAEMaskLayout(model, saes, exp.errors)
    windows = PretrainingWindows(loaded, exp.prune.mean_windows).get()
    ablation = sae_ablation(exp.prune.ablation, model, layout, windows)
    data = load_task_data(exp.task, loaded.tokenizer, exp.prune, model.cfg.n_ctx)
    pruner = Pruner(model, ablation, exp.prune, progress, layout=layout)
    t0 = time.perf_counter()
    out = pruner.prune(data)
    test = data.test.select(torch.arange(min(exp.edge_examples, len(data.test))))
    edges = circuit_edges(model, layout, ablation, out.unit_gates, test, exp.prune.loss,
                          exp.edge_threshold, exp.prune.eval_batch_size)  # fmt: skip
    per_point = units_per_point(layout, out.nodes)
    row = {
        "model": str(exp.dense),
        "saes": [str(p) for p in exp.saes],
        "units_kind": f"SAE latents + error nodes ({exp.errors})",
        "units": len(out.nodes),
        "unit_pool": layout.n_units,
        "latents": sum(v["latents"] for v in per_point.values()),
        "error_nodes": sum(v["error"] for v in per_point.values()),
        "units_per_point": per_point,
        "edges": edges.nonzero,
        "edges_thr": edges.above,
        "edge_pairs": edges.pairs,
        "edge_rule": EDGE_RULE_SAE.format(thr=exp.edge_threshold),
        "edge_examples": len(test),
        "nodes": out.nodes,
        **_validation_row(pruner, data, out),
    }
    row["seconds"] = time.perf_counter() - t0
    return row


def run_sae_vs_sparse(exp: SAEVsSparse, out: Path, progress: bool = True) -> dict[str, Any]:
    """Prune both, write results.json, table.md and sae_vs_sparse.png in `out`."""
    exp.validate()
    results: dict[str, Any] = {
        "experiment": "sae-vs-sparse",
        "task": exp.task,
        "target": exp.prune.target_loss,
        "loss": exp.prune.loss,
        "errors": exp.errors,
        "prune": exp.prune.to_dict(),
        "rows": {},
    }
    dense = load_checkpoint(exp.dense)
    saes = load_saes(dense, exp.saes)  # unusable SAEs fail here, before any pruning
    earlier = _earlier_rows(out / "results.json", results)
    steps = (("weight-sparse", exp.sparse, None, lambda: prune_sparse(exp, progress)),
             ("dense + SAEs", exp.dense, [str(p) for p in exp.saes],
              lambda: prune_sae(exp, dense, saes, progress)))  # fmt: skip
    for name, model, used, prune in steps:
        row = earlier.get(name, {})
        if row.get("model") == str(model) and row.get("saes") == used:
            log.info("%s: reusing the row in %s", name, out / "results.json")
            results["rows"][name] = earlier[name]
            continue
        log.info("pruning %s for the %s row (%s)", exp.task, name, model)
        results["rows"][name] = prune()
        write_json(out / "results.json", results)  # a run killed later keeps this row
    atomic_write_text(out / "table.md", table_markdown(results))
    figure(results, out / "sae_vs_sparse.png")
    return results


def _earlier_rows(path: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Rows of an earlier run in the same directory with the same task, pruning and errors."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    same = all(doc.get(k) == results[k] for k in ("task", "prune", "errors"))
    rows = doc.get("rows") if same else None
    return rows if isinstance(rows, dict) else {}


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec) if isinstance(x, float) else f"{x:,}"


def table_markdown(results: dict[str, Any]) -> str:
    """One row per circuit, then the rules."""
    lines = [
        "| circuit | units | edges | edges >= thr | reached | val | test alone (cal.) "
        "| test without | test full | test all ablated | necessity fraction |",
        "|" + "---|" * 11,
    ]
    for name, r in results["rows"].items():
        lines.append(
            f"| {name} | {_fmt(r['units'])} | {_fmt(r['edges'])} | {_fmt(r['edges_thr'])} | "
            f"{'yes' if r['reached_target'] else 'no'} | {_fmt(r['val_loss'])} | "
            f"{_fmt(r['test_sufficiency'])} | {_fmt(r['test_necessity'])} | "
            f"{_fmt(r['test_full_model'])} | {_fmt(r['test_all_ablated'])} | "
            f"{_fmt(r['necessity_fraction'], '.2f')} |"
        )
    sae = results["rows"].get("dense + SAEs", {})
    lines += [
        "",
        f"Task {results['task']}, target {results['loss']} loss {results['target']:g} (val), "
        f"{results['prune']['ablation']} ablation, {results['prune']['steps']} mask steps.",
        f"Weight-sparse units: {results['rows']['weight-sparse']['units_kind']}; edges: "
        f"{EDGE_RULE_SPARSE}.",
    ]
    if sae:
        per = ", ".join(f"{p}: {v['latents']}+{v['error']}" for p, v in
                        sae["units_per_point"].items())  # fmt: skip
        lines += [
            f"SAE units: {sae['units_kind']}; latents+errors per point: {per} "
            f"(pool {sae['unit_pool']:,}).",
            f"SAE edges: {sae['edge_rule']}; {sae['edge_pairs']:,} candidate pairs, "
            f"{sae['edge_examples']} test examples.",
        ]
    return "\n".join(lines) + "\n"


def figure(results: dict[str, Any], path: Path) -> Path:
    """Left: units and edges per circuit (log). Right: test losses alone / without / full."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    names = list(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    width = 0.38
    xs = range(len(names))
    for offset, key, color in ((-width / 2, "units", "tab:blue"), (width / 2, "edges", "tab:red")):
        vals = [max(rows[n][key] or 0, 1) for n in names]
        ax1.bar([x + offset for x in xs], vals, width, color=color, label=key)
        for x, v in zip(xs, vals, strict=True):
            ax1.annotate(f"{v:,}", (x + offset, v), ha="center", fontsize=8,
                         xytext=(0, 2), textcoords="offset points")  # fmt: skip
    ax1.set_yscale("log")
    ax1.set_xticks(list(xs), names)
    ax1.set_title(f"circuit size at {results['loss']} loss {results['target']:g}", fontsize=10)
    ax1.legend(fontsize=8)
    keys = (("test_full_model", "full model"), ("test_sufficiency", "circuit alone (cal.)"),
            ("test_necessity", "without circuit"), ("test_all_ablated", "all ablated"))  # fmt: skip
    w2 = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        ax2.bar([x - 0.4 + w2 * (i + 0.5) for x in xs], [rows[n][key] for n in names], w2,
                label=label)  # fmt: skip
    ax2.axhline(results["target"], color="k", lw=1, ls="--", label="target")
    ax2.set_xticks(list(xs), names)
    ax2.set_ylabel(f"test {results['loss']} loss")
    ax2.set_title("sufficiency and necessity (test split)", fontsize=10)
    ax2.legend(fontsize=7)
    fig.suptitle(f"{results['task']}: SAE latents of a dense model vs a weight-sparse model",
                 fontsize=11)  # fmt: skip
    return write_figure(path, fig)
