"""Figure 3: the capability-interpretability frontier over weight L0 and total width.

Every (d_model, weight_fraction) pair of the sweep is trained with the same layers, data and
steps; each model's pretraining val loss is plotted against the geometric mean of its circuit
edges at one target loss. The paper's finding: at fixed L0, a wider (hence sparser) model
sits lower-left, i.e. it is both more capable and more interpretable.

The default grid (d_model 64 and 128, weight fractions 1/8 and 1/32) pairs models of similar L0
across widths: d_model 128 at 1/32 keeps about as many weights as d_model 64 at 1/8 (not
exactly, since the embeddings, which are sparse matrices too, grow only linearly with width).

Geometric means are taken over the tasks every model of the sweep reaches, so all points
average the same tasks; how many tasks each model reached is reported beside it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.checkpoint import load_checkpoint
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
from sparsecircuits.experiments.plots import figure3
from sparsecircuits.experiments.runs import train_or_reuse
from sparsecircuits.fileformat import atomic_write_text, write_json
from sparsecircuits.tasks.registry import get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frontier:
    """The sweep: widths x weight fractions at the config's layers, pruned at one target."""

    config: str = "frontier"
    overrides: dict[str, Any] = field(default_factory=dict)
    widths: tuple[int, ...] = (64, 128)
    fractions: tuple[float, ...] = (0.125, 0.03125)
    tasks: tuple[str, ...] = ("single_double_quote", "else_elif", "with_as", "var_if")
    target: float = 0.3
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(loss="two_way"))

    def validate(self) -> Frontier:
        if not self.widths or not self.fractions:
            raise ConfigError("the sweep needs at least one width and one weight fraction")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ConfigError("weight fractions must be in (0, 1]")
        if self.target <= 0:
            raise ConfigError("the target loss must be positive")
        for name in self.tasks:
            get_task(name)
        return self


def run_frontier(exp: Frontier, out: Path, progress: bool = True) -> dict:
    """Train (or reuse) every model of the sweep, prune its tasks, write results + figure3."""
    exp.validate()
    models, points, data = [], {}, None
    for width in exp.widths:
        for fraction in exp.fractions:
            name = f"d{width}_f{fraction:g}"
            cfg = load_config(exp.config, {**exp.overrides, "model.d_model": width,
                                           "sparsity.weight_fraction": fraction})  # fmt: skip
            trained = train_or_reuse(cfg, out / name, progress=progress)
            loaded = load_checkpoint(trained.run_dir)
            if data is None:  # same data config, same tokenizer: encode the tasks once
                data, errors = load_tasks([get_task(t) for t in exp.tasks], loaded, exp.prune)
                for task, msg in errors.items():
                    log.warning("task %s skipped: %s", task, msg)
            sizer = CircuitSizer(loaded, exp.prune, progress=progress)
            points[name] = [p for d in data.values()
                            for p in sizer.sizes(d, [exp.target], out / name / "sizes")]  # fmt: skip
            models.append({
                "name": name,
                "d_model": width,
                "weight_fraction": fraction,
                "nonzeros": trained.nonzeros,
                "val_loss": trained.val_loss,
                "steps": trained.steps,
                "tasks_reached": sum(p.reached for p in points[name]),
            })  # fmt: skip
            _write(exp, models, points, out)
    return _write(exp, models, points, out)


def _write(exp: Frontier, models: list[dict], points: dict[str, list[SizePoint]],
           out: Path) -> dict:  # fmt: skip
    common = sorted(set.intersection(*({p.task for p in pts if p.reached}
                                       for pts in points.values())))  # fmt: skip
    for m in models:
        m["geomean_edges"] = geomean_edges(points[m["name"]], common, exp.target)
    results = {
        "experiment": "frontier",
        "target": exp.target,
        "prune": exp.prune.to_dict(),
        "tasks": list(exp.tasks),
        "tasks_in_geomean": common,
        "models": models,
        "points": {name: point_dicts(p) for name, p in points.items()},
    }
    write_json(out / "results.json", results)
    atomic_write_text(out / "table.md", _table(results))
    figure3(results, out / "figure3.png")
    return results


def _table(results: dict) -> str:
    lines = ["| model | d_model | weight fraction | nonzero weights | val loss | tasks reached | "
             "geomean edges |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    n = len(results["tasks"])
    for m in results["models"]:
        g = m["geomean_edges"]
        lines.append(f"| {m['name']} | {m['d_model']} | {m['weight_fraction']:g} | "
                     f"{m['nonzeros']:,} | {m['val_loss']:.4f} | {m['tasks_reached']}/{n} | "
                     f"{'-' if math.isnan(g) else f'{g:.1f}'} |")  # fmt: skip
    lines += ["", f"Target {results['prune']['loss']} loss {results['target']:g}; geometric "
              f"means over {', '.join(results['tasks_in_geomean']) or 'no task'} (the tasks "
              "every model reaches)."]  # fmt: skip
    return "\n".join(lines) + "\n"
