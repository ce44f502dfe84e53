"""`sparsecircuits experiment sparse-vs-dense | frontier`: the paper's Figures 2 and 3."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.config import parse_overrides
from sparsecircuits.errors import ConfigError

app = typer.Typer(help="Reproduce the paper's headline figures.", no_args_is_help=True)

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Preset or YAML of the models.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a model config key (repeatable).")
]
PruneSetOpt = Annotated[
    list[str] | None,
    typer.Option("--prune-set", help="Override a pruning option: key=value (repeatable)."),
]
LossOpt = Annotated[
    str,
    typer.Option(help="Task loss to prune to: two_way (among the two candidates) or task "
                      "(full vocabulary, the paper's; out of reach for CPU-sized models)."),
]  # fmt: skip
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{what} is empty")
    return values


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(x.strip() for x in text.split(",") if x.strip())


def _prune_config(loss: str, sets: list[str] | None):
    from sparsecircuits.circuits.config import PruneConfig

    return PruneConfig().replace(loss=loss, **parse_overrides(sets))


@app.command("sparse-vs-dense")
def sparse_vs_dense_command(
    out: Annotated[Path, typer.Option(help="Experiment directory (runs, results, figure).")],
    config: ConfigOpt = "demo",
    set_: SetOpt = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks (default: the 20 "
                                                   "paper tasks).")] = None,  # fmt: skip
    targets: Annotated[str, typer.Option(help="Target losses, comma-separated.")] = "0.3,0.15,0.08",
    capable: Annotated[float, typer.Option(help="Prune a task only if the dense model's val "
                                                "loss on it is at most this.")] = 0.15,  # fmt: skip
    loss: LossOpt = "two_way",
    prune_set: PruneSetOpt = None,
    tolerance: Annotated[float, typer.Option(help="Relative val-loss gap that counts as "
                                                  "matched.")] = 0.02,  # fmt: skip
    match_every: Annotated[int, typer.Option(help="Dense model: steps between evaluations "
                                                  "while matching.")] = 25,  # fmt: skip
    progress: ProgressOpt = True,
) -> None:
    """Train a dense and a weight-sparse model to equal val loss, prune the tasks the dense
    model can do in both at several target losses, and compare circuit sizes (Figure 2)."""
    from sparsecircuits.experiments.sparse_vs_dense import SparseVsDense, run_sparse_vs_dense

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exp = SparseVsDense(config=config, overrides=parse_overrides(set_), targets=_floats(targets, "--targets"),
                        capable_loss=capable, prune=_prune_config(loss, prune_set),
                        tolerance=tolerance, match_every=match_every)  # fmt: skip
    if tasks is not None:
        exp = SparseVsDense(**{**exp.__dict__, "tasks": _names(tasks)})
    results = run_sparse_vs_dense(exp, out, progress)
    print((out / "table.md").read_text())
    ratios = {t: row["ratio"] for t, row in results["summary"].items()}
    print("dense/sparse ratio of geometric-mean edges: "
          + ", ".join(f"{r:.3g}x at {t}" for t, r in ratios.items()))  # fmt: skip
    print(f"wrote {out}/results.json, {out}/table.md, {out}/figure2.png")


@app.command("frontier")
def frontier_command(
    out: Annotated[Path, typer.Option(help="Experiment directory (runs, results, figure).")],
    config: ConfigOpt = "frontier",
    set_: SetOpt = None,
    widths: Annotated[str, typer.Option(help="d_model values, comma-separated.")] = "64,128",
    fractions: Annotated[str, typer.Option(help="Weight fractions (L0 / total), "
                                                "comma-separated.")] = "0.125,0.03125",  # fmt: skip
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = (
        "single_double_quote,else_elif,with_as,var_if"
    ),
    target: Annotated[float, typer.Option(help="Target loss of every circuit.")] = 0.3,
    loss: LossOpt = "two_way",
    prune_set: PruneSetOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Sweep width and weight L0 at fixed layers: pretraining loss vs circuit size (Figure 3)."""
    from sparsecircuits.experiments.frontier import Frontier, run_frontier

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        width_values = tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise ConfigError(f"--widths must be comma-separated integers, got {widths!r}") from None
    exp = Frontier(config=config, overrides=parse_overrides(set_), widths=width_values,
                   fractions=_floats(fractions, "--fractions"), tasks=_names(tasks),
                   target=target, prune=_prune_config(loss, prune_set))  # fmt: skip
    run_frontier(exp, out, progress)
    print((out / "table.md").read_text())
    print(f"wrote {out}/results.json, {out}/table.md, {out}/figure3.png")


def export_command(
    run: Annotated[Path, typer.Argument(help="Run or checkpoint directory to export.")],
    out: Annotated[Path, typer.Option(help="New model directory, e.g. models/demo.")],
    command: Annotated[str, typer.Option(help="The command that reproduces the run (goes on "
                                              "the card).")],  # fmt: skip
    tasks: Annotated[bool, typer.Option(help="Evaluate the task suite for the card.")] = True,
) -> None:
    """Export a trained run to the model zoo: compact weights, metrics and a card."""
    from sparsecircuits.zoo import export_model

    card = export_model(run, out, command, tasks)
    print(card.read_text())
    print(f"wrote {out}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="experiment")
    root.command("export")(export_command)
