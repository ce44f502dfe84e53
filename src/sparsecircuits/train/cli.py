"""`sparsecircuits train | eval | sample`."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Annotated

import torch
import typer

from sparsecircuits.config import list_presets, load_config, parse_overrides
from sparsecircuits.errors import ConfigError
from sparsecircuits.train.sampling import check_sampling, generate_text

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help=f"Preset ({', '.join(list_presets())}) or YAML file.")]


def train_command(
    config: ConfigOpt = "demo",
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<preset or file stem>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: section.key=value (repeatable).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (overrides train.device).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    stop_below: Annotated[float | None, typer.Option(help="Stop at the first evaluation whose val loss is at or below this.")] = None,
) -> None:
    """Train a weight-sparse (or dense) GPT on Python code."""
    from sparsecircuits.train.trainer import train

    if stop_below is not None and not math.isfinite(stop_below):
        raise ConfigError(f"--stop-below must be a finite number, got {stop_below}")
    overrides = parse_overrides(set_)
    if device:
        overrides["train.device"] = device
    cfg = load_config(config, overrides)
    out = out or Path("runs") / Path(config).stem
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = train(cfg, out, resume=resume, progress=progress, stop_below=stop_below)
    if int(os.environ.get("RANK", "0")) == 0:  # only rank 0 reports under torchrun
        print(f"val loss {result.val_loss:.4f} after {result.steps} steps")
        print(f"checkpoint: {result.checkpoint}")


def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    batches: Annotated[int | None, typer.Option(help="Val batches to evaluate (default: the run's eval_batches).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
) -> None:
    """Val loss, nonzeros per matrix, dead neurons and residual kurtosis of a checkpoint."""
    from dataclasses import asdict

    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.errors import SparseCircuitsError
    from sparsecircuits.fileformat import write_json
    from sparsecircuits.train.inspect import inspect_model

    if batches is not None and batches < 1:
        raise SparseCircuitsError(f"--batches must be >= 1, got {batches}")
    loaded = load_checkpoint(checkpoint)
    report = inspect_model(loaded, batches)
    print(f"checkpoint {loaded.path} (step {loaded.meta.get('step')})")
    print(f"val loss: {report.val_loss:.4f} nats/token over {report.tokens} tokens")
    total_nz = sum(m.nonzeros for m in report.matrices)
    total = sum(torch.Size(m.shape).numel() for m in report.matrices)
    print(f"\nnonzeros: {total_nz} of {total} sparse-matrix entries ({total_nz / total:.4f})")
    print(f"{'matrix':<32} {'shape':>14} {'nonzeros':>10} {'target':>10}")
    for m in report.matrices:
        print(f"{m.name:<32} {'x'.join(map(str, m.shape)):>14} {m.nonzeros:>10} {m.target:>10}")
    print(f"\ndead MLP neurons (of {report.neurons_per_layer} per layer):")
    for loc, n in report.dead_neurons.items():
        print(f"  {loc}: {n}")
    print("\nresidual-stream kurtosis (Gaussian = 3), before each block and after the last:")
    print("  " + "  ".join(f"{k:.1f}" for k in report.kurtosis))
    if json_out:
        write_json(json_out, asdict(report), indent=2)


def sample_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint or run directory.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "def ",
    tokens: Annotated[int, typer.Option(help="Number of tokens to generate.")] = 64,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Sample only from the k most likely tokens.")] = 40,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Generate a continuation of a prompt."""
    from sparsecircuits.checkpoint import load_checkpoint

    check_sampling(tokens, temperature, top_k, seed)  # before loading the model
    loaded = load_checkpoint(checkpoint)
    print(generate_text(loaded, prompt, tokens, temperature, top_k, seed))


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("sample")(sample_command)
