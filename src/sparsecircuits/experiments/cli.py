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
    sparse: Annotated[Path | None, typer.Option(help="Use this trained sparse model (with "
                                                     "--dense) instead of training the pair; "
                                                     "--config/--set are then unused.")] = None,
    dense: Annotated[Path | None, typer.Option(help="Use this trained dense model, of any width, "
                                                    "matched to --sparse.")] = None,
    progress: ProgressOpt = True,
) -> None:
    """Train a dense and a weight-sparse model to equal val loss (or take a trained pair), prune
    the tasks the dense model can do in both at several target losses, and compare circuit
    sizes (Figure 2)."""
    from sparsecircuits.experiments.sparse_vs_dense import SparseVsDense, run_sparse_vs_dense

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exp = SparseVsDense(config=config, overrides=parse_overrides(set_), targets=_floats(targets, "--targets"),
                        capable_loss=capable, prune=_prune_config(loss, prune_set),
                        tolerance=tolerance, match_every=match_every, sparse_model=sparse,
                        dense_model=dense)  # fmt: skip
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


@app.command("sae-vs-sparse")
def sae_vs_sparse_command(
    out: Annotated[Path, typer.Option(help="Directory for results.json, table.md, figure.")],
    sparse: Annotated[Path, typer.Option(help="Weight-sparse model.")] = Path("models/demo"),
    dense: Annotated[Path, typer.Option(help="Dense model matched to it.")] = Path(
        "models/demo-dense"
    ),
    sae: Annotated[list[Path] | None, typer.Option(help="SAE of the dense model (repeatable; "
                   "default models/demo-dense/sae-{0..3}.resid_post-k32).")] = None,  # fmt: skip
    task: Annotated[str, typer.Option(help="Task to prune.")] = "single_double_quote",
    target: Annotated[float, typer.Option(help="Target loss of both circuits.")] = 0.5,
    loss: LossOpt = "two_way",
    errors: Annotated[str, typer.Option(help="SAE error terms: node (one prunable unit per "
                                             "SAE) or kept (never ablated).")] = "node",  # fmt: skip
    edge_threshold: Annotated[float, typer.Option(help="Also count SAE edges with |w| >= this "
                                                       "x the largest.")] = 0.01,  # fmt: skip
    prune_set: PruneSetOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Smallest SAE-latent circuit of the dense model vs the weight-sparse circuit, same task,
    target and pruning: units, edges, sufficiency and necessity (docs/sae-circuits.md)."""
    from sparsecircuits.experiments.sae_vs_sparse import SAEVsSparse, run_sae_vs_sparse

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sets = [f"target_loss={target}", *(prune_set or [])]
    exp = SAEVsSparse(sparse=sparse, dense=dense, task=task, prune=_prune_config(loss, sets),
                      errors=errors, edge_threshold=edge_threshold)  # fmt: skip
    if sae:
        exp = SAEVsSparse(**{**exp.__dict__, "saes": tuple(sae)})
    run_sae_vs_sparse(exp, out, progress)
    print((out / "table.md").read_text())
    print(f"wrote {out}/results.json, {out}/table.md, {out}/sae_vs_sparse.png")


@app.command("posthoc-pruning")
def posthoc_pruning_command(
    sparse: Annotated[Path, typer.Option(help="The weight-sparse checkpoint.")],
    dense: Annotated[Path, typer.Option(help="The dense checkpoint to prune.")],
    out: Annotated[Path, typer.Option(help="Experiment directory (models, results, figure).")],
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks whose circuits are "
                                            "measured.")] = "single_double_quote",  # fmt: skip
    solved_tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks counted for "
                                                          "'tasks solved' (default: the 20 "
                                                          "paper tasks).")] = None,  # fmt: skip
    targets: Annotated[str, typer.Option(help="Target losses, comma-separated.")] = "0.3",
    loss: LossOpt = "two_way",
    prune_set: PruneSetOpt = None,
    finetune_fraction: Annotated[float, typer.Option(help="Fine-tuning tokens as a fraction of "
                                                          "the sparse model's training "
                                                          "tokens.")] = 0.1,  # fmt: skip
    max_finetune_steps: Annotated[int | None, typer.Option(help="Cap on fine-tuning steps.")] = None,
    finetune_lr_scale: Annotated[float, typer.Option(help="Peak fine-tuning LR as a fraction of "
                                                          "the dense run's.")] = 0.1,  # fmt: skip
    progress: ProgressOpt = True,
) -> None:
    """Magnitude-prune a dense model to the sparse model's nonzero count (one-shot, and
    fine-tuned with the mask fixed) and compare val loss, tasks solved and circuit sizes of
    dense, pruned dense and sparse (docs/usage.md)."""
    from sparsecircuits.experiments.posthoc_pruning import PosthocPruning, run_posthoc_pruning

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exp = PosthocPruning(sparse=sparse, dense=dense, tasks=_names(tasks) or (),
                         targets=_floats(targets, "--targets"),
                         prune=_prune_config(loss, prune_set),
                         finetune_fraction=finetune_fraction,
                         max_finetune_steps=max_finetune_steps,
                         finetune_lr_scale=finetune_lr_scale)  # fmt: skip
    if solved_tasks is not None:
        exp = PosthocPruning(**{**exp.__dict__, "solved_tasks": _names(solved_tasks)})
    run_posthoc_pruning(exp, out, progress)
    print((out / "table.md").read_text())
    print(f"wrote {out}/results.json, {out}/table.md, {out}/posthoc.png")


@app.command("interpretability")
def interpretability_command(
    out: Annotated[Path, typer.Option(help="Experiment directory (results, table, figure).")],
    sparse: Annotated[Path, typer.Option(help="The weight-sparse checkpoint.")] = Path("models/demo"),
    dense: Annotated[Path, typer.Option(help="The matched dense checkpoint.")] = Path(
        "models/demo-dense"
    ),
    sae: Annotated[Path | None, typer.Option(help="SAE trained on the dense model.")] = None,
    at: Annotated[str, typer.Option(help="Locations compared, comma-separated globs.")] = (
        "*.mlp.post_act"
    ),
    circuit: Annotated[list[Path] | None, typer.Option(help="Circuit file of either model "
                                                            "(repeatable).")] = None,  # fmt: skip
    sample: Annotated[int | None, typer.Option(help="At most this many units per location "
                                                    "and model.")] = None,  # fmt: skip
    windows: Annotated[int, typer.Option(help="Val windows (half explain, half held out).")] = 256,
    cache: Annotated[Path | None, typer.Option(help="Explanation cache directory.")] = None,
) -> None:
    """Explain and score (offline, detection on held-out text) the sparse model's nodes, the
    dense model's neurons, SAE latents and circuit nodes: a monosemanticity table and figure
    (docs/autointerp.md)."""
    from sparsecircuits.autointerp.corpus import ExplainConfig
    from sparsecircuits.experiments.interpretability import (
        Interpretability,
        run_interpretability,
    )

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exp = Interpretability(sparse=sparse, dense=dense, sae=sae, at=_names(at) or (),
                           circuits=tuple(circuit or ()), sample=sample,
                           corpus=ExplainConfig(windows=windows), cache_dir=cache)  # fmt: skip
    run_interpretability(exp, out)
    print((out / "table.md").read_text())
    print(f"wrote {out}/results.json, {out}/table.md, {out}/interpretability.png")


def export_command(
    run: Annotated[Path, typer.Argument(help="Run or checkpoint directory to export.")],
    out: Annotated[Path, typer.Option(help="New model directory, e.g. models/demo.")],
    command: Annotated[str, typer.Option(help="The command that reproduces the run (goes on "
                                              "the card).")],  # fmt: skip
    tasks: Annotated[bool, typer.Option(help="Evaluate the task suite for the card.")] = True,
    storage: Annotated[str, typer.Option(help="auto: store each weight tensor as dense or as "
                                              "indices + values, whichever is smaller; dense; "
                                              "sparse.")] = "auto",  # fmt: skip
) -> None:
    """Export a trained run to the model zoo: compact weights, metrics and a card."""
    from sparsecircuits.zoo import export_model

    card = export_model(run, out, command, tasks, storage)  # type: ignore[arg-type]
    print(card.read_text())
    print(f"wrote {out}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="experiment")
    root.command("export")(export_command)
