"""The experiments' figures (matplotlib, written as PNG without a display)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from sparsecircuits.fileformat import write_figure  # noqa: E402

COLORS = {"sparse": "tab:blue", "dense": "tab:red"}


def figure2(results: dict, path: Path) -> Path:
    """Circuit edges vs target task loss, log-log: per task (thin), geometric mean (thick)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for model, points in results["points"].items():
        color = COLORS.get(model, "gray")
        for task in sorted({p["task"] for p in points}):
            pts = sorted((p for p in points if p["task"] == task and p["reached"]),
                         key=lambda p: p["target"])  # fmt: skip
            if pts:
                ax.plot([p["target"] for p in pts], [max(p["edges"], 1) for p in pts],
                        color=color, alpha=0.3, lw=1, marker=".")  # fmt: skip
                ax.annotate(task, (pts[0]["target"], max(pts[0]["edges"], 1)), fontsize=6,
                            color=color, alpha=0.7, xytext=(3, 2), textcoords="offset points")  # fmt: skip
        mean = [(float(t), row[model]) for t, row in results["summary"].items()
                if not math.isnan(row[model])]  # fmt: skip
        if mean:
            xs, ys = zip(*sorted(mean), strict=True)
            ax.plot(xs, ys, color=color, lw=2.5, marker="o",
                    label=f"{model}: geometric mean over tasks, at each target")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"target {results['prune']['loss']} task loss of the circuit (val)")
    ax.set_ylabel("circuit edges")
    ax.set_title("Circuit size at equal pretraining loss: weight-sparse vs dense")
    return _save(fig, ax, path)


def figure3(results: dict, path: Path) -> Path:
    """Pretraining loss vs geometric-mean circuit edges, one point per model of the sweep."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    models = [m for m in results["models"] if not math.isnan(m["geomean_edges"])]
    for width in sorted({m["d_model"] for m in models}):
        pts = sorted((m for m in models if m["d_model"] == width), key=lambda m: m["nonzeros"])
        ax.plot([m["geomean_edges"] for m in pts], [m["val_loss"] for m in pts], marker="o",
                label=f"d_model {width}")  # fmt: skip
        for m in pts:
            ax.annotate(f"L0 {m['nonzeros']:,}", (m["geomean_edges"], m["val_loss"]),
                        fontsize=7, xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"geometric mean of circuit edges (target {results['target']:g})")
    ax.set_ylabel("pretraining val loss (nats/token)")
    ax.set_title("Capability vs interpretability: weight L0 and width")
    return _save(fig, ax, path)


def _save(fig, ax, path: Path) -> Path:
    """Grid, legend (if anything is labelled), PNG, and free the figure."""
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return write_figure(path, fig)
