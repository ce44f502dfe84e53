"""Figure 2: circuits in a weight-sparse model vs a dense one of the same pretraining loss.

    1. Train the weight-sparse model (the config as given).
    2. Train the dense model (the same config with weight_fraction 1.0, hence the same data,
       architecture and schedule) and stop it at the first evaluation whose val loss is within
       `tolerance` of the sparse model's. A dense model learns faster per step, so matching by
       steps is the cheap way to equal loss; the match actually reached is reported.
    3. Evaluate every task on val in both; keep the tasks the dense model can do (val loss at
       or below `capable_loss`), since a circuit can only be as good as its model.
    4. Prune each kept task in both models at every target loss; count edges.
    5. Write results.json, table.md and figure2.png; the headline is the ratio of the
       geometric means of edges (dense / sparse) over the tasks both models reach.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.checkpoint import Loaded, load_checkpoint
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.config import load_config
from sparsecircuits.errors import ConfigError
from sparsecircuits.experiments.circuit_sizes import (
    CircuitSizer,
    SizePoint,
    geomean_edges,
    load_tasks,
    point_dicts,
)
from sparsecircuits.experiments.plots import figure2
from sparsecircuits.experiments.runs import TrainedModel, existing_model, train_or_reuse
from sparsecircuits.fileformat import atomic_write_text, write_json
from sparsecircuits.tasks.registry import PAPER_TASKS, get_task

log = logging.getLogger(__name__)
PAPER_RATIO = 16.0
"""The paper's dense/sparse ratio of geometric-mean circuit edges at equal pretraining loss."""


@dataclass(frozen=True)
class SparseVsDense:
    """Everything that defines the experiment."""

    config: str = "demo"
    """Preset or YAML of the sparse model (the dense one differs only in weight_fraction)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = PAPER_TASKS
    targets: tuple[float, ...] = (0.3, 0.15, 0.08)
    capable_loss: float = 0.15
    """A task enters when the dense model's val loss on it is at or below this."""
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(loss="two_way"))
    tolerance: float = 0.02
    """Largest relative gap between the two models' val losses that counts as matched."""
    match_every: int = 25
    """Steps between the dense model's evaluations (how finely its stop is placed)."""
    sparse_model: Path | None = None
    """An already trained sparse model to use instead of training one (with `dense_model`)."""
    dense_model: Path | None = None
    """An already trained dense model matched to `sparse_model` (any width)."""

    def validate(self) -> SparseVsDense:
        if not self.targets or any(t <= 0 for t in self.targets):
            raise ConfigError("targets must be positive task losses")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if self.match_every < 1:
            raise ConfigError(f"match_every must be >= 1, got {self.match_every}")
        if (self.sparse_model is None) != (self.dense_model is None):
            raise ConfigError("give both --sparse and --dense (existing models) or neither")
        for name in self.tasks:
            get_task(name)  # unknown names fail here, before hours of training
        return self


def run_sparse_vs_dense(exp: SparseVsDense, out: Path, progress: bool = True) -> dict:
    """Run (or finish) the experiment in `out`; returns what results.json holds."""
    exp.validate()
    if exp.sparse_model is not None and exp.dense_model is not None:
        sparse, dense = existing_model(exp.sparse_model), existing_model(exp.dense_model)
        match_how = "given models (trained elsewhere)"
    else:
        sparse, dense = _train_pair(exp, out, progress)
        match_how = (f"dense stopped at its first evaluation (every {exp.match_every} steps) with "
                     f"val loss <= {1 + exp.tolerance:g} x the sparse model's")  # fmt: skip
    if sparse.config.sparsity.weight_fraction >= 1.0 or dense.config.sparsity.weight_fraction < 1.0:
        raise ConfigError(f"{sparse.run_dir} must be weight-sparse and {dense.run_dir} dense")
    gap = dense.val_loss / sparse.val_loss - 1
    match = {"how": match_how, "relative_gap": gap, "matched": abs(gap) <= exp.tolerance}
    if not match["matched"]:
        log.warning("val losses differ by %.1f%% (tolerance %.0f%%): results are reported but "
                    "the models are not matched", 100 * gap, 100 * exp.tolerance)  # fmt: skip
    loaded = {"sparse": load_checkpoint(sparse.run_dir), "dense": load_checkpoint(dense.run_dir)}
    return _compare(exp, out, progress, sparse, dense, match, loaded)


def _train_pair(exp: SparseVsDense, out: Path, progress: bool) -> tuple[TrainedModel, TrainedModel]:
    """Train the sparse model, then the dense one until its val loss matches (runs reused)."""
    sparse_cfg = load_config(exp.config, exp.overrides)
    if sparse_cfg.sparsity.weight_fraction >= 1.0:
        raise ConfigError(f"config {exp.config} is dense (weight_fraction 1.0); the sparse model "
                          "needs a weight_fraction below 1")  # fmt: skip
    dense_cfg = load_config(
        exp.config,
        {**exp.overrides, "sparsity.weight_fraction": 1.0, "train.eval_every": exp.match_every},
    )
    sparse = train_or_reuse(sparse_cfg, out / "sparse", progress=progress)
    dense = train_or_reuse(dense_cfg, out / "dense", sparse.val_loss * (1 + exp.tolerance),
                           progress)  # fmt: skip
    return sparse, dense


def _compare(exp: SparseVsDense, out: Path, progress: bool, sparse: TrainedModel,
             dense: TrainedModel, match: dict, loaded: dict[str, Loaded]) -> dict:  # fmt: skip
    """Prune every task the dense model can do in both models; results.json after each task."""
    if loaded["sparse"].tokenizer.to_str() != loaded["dense"].tokenizer.to_str():
        raise ConfigError("the two models were trained with different tokenizers")
    data, errors = load_tasks([get_task(t) for t in exp.tasks], loaded["dense"], exp.prune)
    sizers = {m: CircuitSizer(ld, exp.prune, progress=progress) for m, ld in loaded.items()}

    results: dict[str, Any] = {
        "experiment": "sparse-vs-dense",
        "models": {"sparse": _model_doc(sparse), "dense": _model_doc(dense)},
        "match": match,
        "prune": exp.prune.to_dict(),
        "targets": list(exp.targets),
        "capable_loss": exp.capable_loss,
        "tasks": [{"task": name, "error": msg} for name, msg in errors.items()],
        "points": {"sparse": [], "dense": []},
        "paper_ratio": PAPER_RATIO,
    }
    points: dict[str, list[SizePoint]] = {"sparse": [], "dense": []}
    for name, task_data in data.items():
        full = {m: s.full_loss(task_data) for m, s in sizers.items()}
        capable = full["dense"] <= exp.capable_loss
        results["tasks"].append({"task": name, "full_loss": full, "pruned": capable})
        if not capable:
            continue
        for model, sizer in sizers.items():
            points[model] += sizer.sizes(task_data, list(exp.targets), out / model / "sizes")
        _summarise(results, points, exp)
        write_results(results, out)  # after each task: a killed run keeps what it measured
    _summarise(results, points, exp)
    return write_results(results, out)


def _model_doc(m: TrainedModel) -> dict[str, Any]:
    return {
        "run_dir": str(m.run_dir),
        "val_loss": m.val_loss,
        "steps": m.steps,
        "tokens": m.tokens,
        "nonzeros": m.nonzeros,
        "weight_fraction": m.config.sparsity.weight_fraction,
        "model": m.config.to_dict()["model"],
    }


def _summarise(results: dict, points: dict[str, list[SizePoint]], exp: SparseVsDense) -> None:
    results["points"] = {m: point_dicts(p) for m, p in points.items()}
    summary = {}
    for target in exp.targets:
        both = sorted(
            {p.task for p in points["sparse"] if p.target == target and p.reached}
            & {p.task for p in points["dense"] if p.target == target and p.reached}
        )
        sparse, dense = (geomean_edges(points[m], both, target) for m in ("sparse", "dense"))
        summary[str(target)] = {
            "tasks": both,
            "sparse": sparse,
            "dense": dense,
            "ratio": dense / sparse if both else math.nan,
        }
    results["summary"] = summary


def write_results(results: dict, out: Path) -> dict:
    write_json(out / "results.json", results)
    atomic_write_text(out / "table.md", table_markdown(results))
    figure2(results, out / "figure2.png")
    return results


def _fmt(x: float, spec: str = ".3f") -> str:
    missing = x is None or (isinstance(x, float) and math.isnan(x))
    return "-" if missing else format(x, spec)


def table_markdown(results: dict) -> str:
    """Per-task edges at every target, then the geometric means and their ratio."""
    targets = results["targets"]
    by = {(m, p["task"], p["target"]): p for m, pts in results["points"].items() for p in pts}
    head = "| task | dense loss | sparse loss | " + " | ".join(
        f"edges @{t:g} sparse / dense (ratio)" for t in targets) + " |"  # fmt: skip
    lines = [head, "|" + "---|" * (3 + len(targets))]
    for row in results["tasks"]:
        if "full_loss" not in row or not row["pruned"]:
            continue
        cells = []
        for t in targets:
            s, d = by.get(("sparse", row["task"], t)), by.get(("dense", row["task"], t))
            ratio = ""
            if s and d and s["reached"] and d["reached"]:
                ratio = f" ({max(d['edges'], 1) / max(s['edges'], 1):.3g}x)"
            cells.append(f"{_edges(s)} / {_edges(d)}{ratio}")
        lines.append(f"| {row['task']} | {_fmt(row['full_loss']['dense'])} | "
                     f"{_fmt(row['full_loss']['sparse'])} | " + " | ".join(cells) + " |")  # fmt: skip
    for key, label in (("sparse", "geomean sparse"), ("dense", "geomean dense"),
                       ("ratio", "dense / sparse")):  # fmt: skip
        values = [results["summary"].get(str(t), {}).get(key, math.nan) for t in targets]
        cells = [_fmt(v, ".3g" if key == "ratio" else ",.1f") for v in values]
        lines.append(f"| **{label}** | | | " + " | ".join(cells) + " |")
    skipped = [r["task"] for r in results["tasks"] if r.get("full_loss") and not r["pruned"]]
    m = results["models"]
    lines += [
        "",
        f"Sparse: val loss {m['sparse']['val_loss']:.4f} after {m['sparse']['steps']} steps, "
        f"{m['sparse']['nonzeros']:,} nonzero weights. Dense: val loss "
        f"{m['dense']['val_loss']:.4f} after {m['dense']['steps']} steps, "
        f"{m['dense']['nonzeros']:,} weights. Gap {100 * results['match']['relative_gap']:+.2f}%.",
        f"Tasks pruned: those with dense val {results['prune']['loss']} loss <= "
        f"{results['capable_loss']:g}. Geometric means over the tasks both models reach at "
        f"that target. Paper: ~{results['paper_ratio']:g}x.",
        f"Not pruned (dense model above the bar): {', '.join(skipped) or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def _edges(p: dict | None) -> str:
    if p is None:
        return "-"
    return f"{p['edges']}" if p["reached"] else f"({p['edges']})"
