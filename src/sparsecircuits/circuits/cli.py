"""`sparsecircuits prune CKPT --task NAME | --all-tasks`: find, validate and save circuits."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.config import parse_overrides
from sparsecircuits.errors import CircuitError, TaskError
from sparsecircuits.fileformat import write_json


def _default_out(checkpoint: Path) -> Path:
    """circuits/<run name>: the run directory's name (never inside the checkpoint)."""
    from sparsecircuits.checkpoint import CHECKPOINT_DIR, resolve

    p = resolve(checkpoint).resolve()
    name = p.parent.name if p.name == CHECKPOINT_DIR else p.name
    return Path("circuits") / name


def prune_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    task: Annotated[str | None, typer.Option(help="Task name, or a path ending in .jsonl.")] = None,
    all_tasks: Annotated[
        bool, typer.Option("--all-tasks", help="Prune every built-in paper task and print a table.")
    ] = False,
    target_loss: Annotated[
        float, typer.Option(help="Val loss (of the kind --loss names) the circuit must reach.")
    ] = 0.15,
    loss: Annotated[
        str,
        typer.Option(
            help="Loss to reach: task (cross entropy over the vocabulary) or two_way "
            "(cross entropy among the two candidates)."
        ),
    ] = "task",
    ablation: Annotated[
        str, typer.Option(help="How pruned nodes are replaced: mean, zero or resample.")
    ] = "mean",
    steps: Annotated[
        int | None, typer.Option(help="Mask optimisation steps (default 200).")
    ] = None,
    tie_qk: Annotated[
        bool, typer.Option("--tie-qk", help="One mask per (q channel, k channel) pair.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of masks, batches and resample draws.")] = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any pruning option: key=value (repeatable), e.g. k_coef=3e-4."),
    ] = None,
    search: Annotated[
        int, typer.Option(help="Optuna trials over pruning hyperparameters (0 = defaults).")
    ] = 0,
    controls: Annotated[
        bool | None,
        typer.Option(help="Run the controls (default: on for --task, off for --all-tasks)."),
    ] = None,
    baseline: Annotated[
        bool | None,
        typer.Option(
            help="Run the gradient-attribution baseline (default: on for --task, off for --all-tasks)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output directory (default circuits/<run name>); one subdirectory per task."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache of ablation means (default ~/.cache/sparsecircuits/means)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = torch default).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Find the smallest circuit that performs a task, validate it, and write circuit.json."""
    import torch

    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.circuits.config import PruneConfig
    from sparsecircuits.circuits.pipeline import CircuitContext, find_circuit, summary_row
    from sparsecircuits.config import MAX_THREADS
    from sparsecircuits.tasks.registry import PAPER_TASKS, get_task

    if (task is None) == (not all_tasks):
        raise CircuitError("give exactly one of --task NAME or --all-tasks")
    changes = {
        "target_loss": target_loss,
        "loss": loss,
        "ablation": ablation,
        "tie_qk": tie_qk,
        "seed": seed,
    }
    if steps is not None:
        changes["steps"] = steps
    changes.update(parse_overrides(set_))
    cfg = PruneConfig().replace(**changes)
    if search < 0:
        raise CircuitError(f"--search must be >= 0, got {search}")
    if not 0 <= threads <= MAX_THREADS:
        raise CircuitError(f"--threads must be in [0, {MAX_THREADS}], got {threads}")
    tasks = [get_task(task)] if task is not None else [get_task(n) for n in PAPER_TASKS]
    if threads:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = out or _default_out(checkpoint)
    _check_outputs(out, [_safe(t.name) for t in tasks], summary=task is None)
    loaded = load_checkpoint(checkpoint, device=device)
    ctx = CircuitContext(loaded, cfg, cache_dir)
    single = task is not None
    controls = single if controls is None else controls
    baseline = single if baseline is None else baseline

    if single:
        circuit, tensors = find_circuit(ctx, tasks[0], controls, baseline, search, progress)
        path = circuit.save(out / _safe(circuit.task["name"]), tensors)
        print_circuit(circuit)
        print(f"\nwrote {path}")
        return

    rows = []
    for t in tasks:
        try:
            circuit, tensors = find_circuit(ctx, t, controls, baseline, search, progress)
        except (CircuitError, TaskError) as exc:  # a task the model cannot do: a table row
            rows.append({"task": t.name, "error": str(exc)})
            continue
        circuit.save(out / _safe(t.name), tensors)
        rows.append(summary_row(circuit))
    print_table(rows)
    write_json(out / "summary.json", rows)  # strict JSON: a NaN loss is written as null
    print(f"\nwrote {out}/<task>/circuit.json and {out}/summary.json")


def _safe(name: str) -> str:
    return Path(name).stem if name.endswith(".jsonl") else name


def _check_outputs(out: Path, task_dirs: list[str], summary: bool) -> None:
    """Refuse outputs that cannot be written now, before minutes of pruning, not after."""
    from sparsecircuits.fileformat import check_writable_dir

    check_writable_dir(out, "--out", CircuitError)
    for name in task_dirs:
        check_writable_dir(out / name, "circuit directory", CircuitError)
    if summary and (out / "summary.json").is_dir():
        raise CircuitError(f"{out / 'summary.json'} is a directory; choose another --out")


def _f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def print_circuit(c) -> None:
    """The human-readable report of one circuit."""
    counts, losses, v = c.counts, c.losses, c.validation
    print(f"task {c.task['name']}: {c.task['description']}")
    print(
        f"model {c.model['path']} (step {c.model['step']}, sha256 {c.model['content_hash'][:12]})"
    )
    print(
        f"ablation {c.ablation}, target val {c.hyperparameters['loss']} loss {c.target_loss:g}, "
        f"splits {c.task['split_sizes']}"
    )
    print(
        f"\ncircuit: {counts['nodes']} nodes (of {counts['model_nodes']}), "
        f"{counts['edges']} edges  [+ {counts['embed_edges']} embedding, "
        f"{counts['unembed_edges']} unembedding = {counts['edges_total']} total]"
    )
    print(
        "  per location: " + ", ".join(f"{k} {n}" for k, n in counts["nodes_per_location"].items())
    )
    kind = {"task": "over the vocabulary", "two_way": "between the two candidates"}
    print(f"\nlosses (cross entropy of the correct token {kind[c.hyperparameters['loss']]}):")
    print(
        f"  full model          val {_f(losses['full_model_val'])}  test {_f(losses['full_model_test'])}"
    )
    print(
        f"  circuit, val        {_f(losses['val_before_calibration'])} before calibration, "
        f"{_f(losses['val_after_calibration'])} after "
        f"(scale {c.calibration['scale']:.3f}, shift {c.calibration['shift']:.3f})"
    )
    suff, nec = v["sufficiency"], v["necessity"]
    print(
        f"  sufficiency, test   {_f(suff['loss'])} (acc {_f(suff['accuracy'], 3)}; "
        f"uncalibrated {_f(v['sufficiency_uncalibrated']['loss'])})"
    )
    print(
        f"  necessity, test     {_f(nec['loss'])} (acc {_f(nec['accuracy'], 3)}; "
        f"all nodes ablated {_f(v['all_ablated']['loss'])}; "
        f"fraction of that gap {_f(v['necessity_fraction'], 2)})"
    )
    for ctl in v.get("controls", []):
        size = f"{ctl['nodes']} nodes / {ctl['edges']} edges"
        if ctl["reached_target"]:
            outcome = f"REACHED the target: val {_f(ctl['val_loss'])} with {size}"
        else:
            outcome = f"did not reach the target: best val {_f(ctl['best_val_loss'])} with {size}"
        print(
            f"  control {ctl['name']:<15} full model val {_f(ctl['full_model_val_loss'])}; "
            + outcome
        )
    if c.baseline:
        b = c.baseline
        verdict = "" if b["reached_target"] else " (target not reached)"
        print(
            f"  baseline attribution {b['nodes']} nodes, {b['edges']} edges, val {_f(b['val_loss'])}{verdict}"
        )
    if c.search:
        print(f"  search: {c.search['trials']} Optuna trials, best {c.search['best']}")
    w = c.wall_time_s
    print(
        f"\ntime: {w['total']:.1f} s total; mask training {w.get('train_masks', 0):.1f} s "
        f"({c.training['steps_per_s']:.2f} steps/s), search on k {w.get('search_k', 0):.1f} s"
    )


def print_table(rows: list[dict]) -> None:
    """`--all-tasks`: one line per task, then the geometric mean of edges."""
    from sparsecircuits.circuits.pipeline import geometric_mean

    print(
        f"{'task':<28} {'nodes':>6} {'edges':>6} {'total':>6} {'full':>6} {'val':>6} "
        f"{'val_c':>6} {'test':>6} {'nec':>6}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['task']:<28} -- {r['error'].split(': ')[0]}")  # details in summary.json
            continue
        print(
            f"{r['task']:<28} {r['nodes']:>6} {r['edges']:>6} {r['edges_total']:>6} "
            f"{_f(r['full_val']):>6} {_f(r['val']):>6} {_f(r['val_cal']):>6} "
            f"{_f(r['test']):>6} {_f(r['necessity']):>6}"
        )
    done = [r["edges"] for r in rows if "error" not in r]
    print(f"\ngeometric mean of edges over {len(done)} task(s): {_f(geometric_mean(done), 1)}")


def register(app: typer.Typer) -> None:
    from sparsecircuits.circuits import eval_cli

    app.command("prune")(prune_command)
    app.add_typer(eval_cli.app, name="circuit")
