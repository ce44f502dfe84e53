"""`sparsecircuits sae train | eval | export-saelens | import-saelens` (docs/sae.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from sparsecircuits.errors import SAEError

app = typer.Typer(
    help="Sparse autoencoders (TopK) on our models' activations: train, evaluate, convert.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
ThreadsOpt = Annotated[int, typer.Option(help="torch CPU threads (0 = torch default).")]


def _setup(threads: int) -> None:
    import torch

    if threads < 0:
        raise SAEError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


@app.command("train")
def train_command(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint or run directory (dense or sparse).")
    ],
    at: Annotated[
        str, typer.Option("--at", help="Hook point, e.g. 1.resid_post or 0.mlp.post_act.")
    ],
    out: Annotated[
        Path, typer.Option(help="Directory for sae.safetensors and trainer.safetensors.")
    ],
    k: Annotated[int | None, typer.Option(help="Active latents per token (default 32).")] = None,
    expansion: Annotated[int | None, typer.Option(help="d_sae / d_in (default 8).")] = None,
    tokens: Annotated[int | None, typer.Option(help="Training tokens (default 2,000,000).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tokens per step (default 4096).")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam lr (default 2e-4/sqrt(d_sae/2^14)).")
    ] = None,
    batch_topk: Annotated[
        bool | None,
        typer.Option("--batch-topk/--no-batch-topk", help="BatchTopK instead of per-token TopK."),
    ] = None,  # fmt: skip
    b_dec_init: Annotated[str | None, typer.Option(help="geometric_median, mean or zeros.")] = None,
    dead_tokens: Annotated[int | None, typer.Option(help="Tokens without firing = dead.")] = None,
    buffer_windows: Annotated[int | None, typer.Option(help="Windows shuffled together.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init, windows and shuffles.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Save every N steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Train a TopK SAE on activations at --at, streamed over the model's pretraining corpus."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.sae.config import SAETrainConfig
    from sparsecircuits.sae.sae_file import doc_summary, load_sae
    from sparsecircuits.sae.trainer import train_sae

    _setup(threads)
    given = {"k": k, "expansion": expansion, "tokens": tokens, "batch_size": batch_size,
             "lr": lr, "batch_topk": batch_topk, "b_dec_init": b_dec_init,
             "dead_tokens": dead_tokens, "buffer_windows": buffer_windows, "seed": seed,
             "checkpoint_every": checkpoint_every}  # fmt: skip
    cfg = SAETrainConfig(location=at).replace(**{n: v for n, v in given.items() if v is not None})
    cfg.check()
    loaded = load_checkpoint(checkpoint, device=device)
    path = train_sae(loaded, cfg, out, resume=resume, progress=progress)
    handle = load_sae(path)
    metrics = handle.meta.get("training_metrics") or {}
    print(f"{doc_summary(handle.meta)}, {handle.meta['trained_tokens']:,} tokens")
    if metrics:
        print(f"last batch: fvu {metrics['fvu']:.4f}, l0 {metrics['l0']:.1f}, "
              f"dead {metrics['dead_fraction']:.3f}")  # fmt: skip
    print(f"wrote {path}")


def _fmt(x: float | int | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,}" if isinstance(x, int) else f"{x:.4f}"


def print_metrics(doc: dict) -> None:
    """The eval report, one metric a line."""
    m = doc["metrics"]
    print(f"{doc['architecture']} SAE at {doc['location']}, k {doc['k']}, "
          f"{m['tokens']:,} val tokens")  # fmt: skip
    rows = [("L0", "l0"), ("explained variance", "explained_variance"), ("MSE", "mse"),
            ("cosine similarity", "cosine_similarity"), ("CE loss clean", "ce_loss_clean"),
            ("CE loss with SAE", "ce_loss_with_sae"),
            ("CE loss zero-ablated", "ce_loss_with_ablation"),
            ("CE loss recovered", "ce_loss_recovered"), ("KL with SAE", "kl_div_with_sae"),
            ("KL zero-ablated", "kl_div_with_ablation"), ("KL score", "kl_score"),
            ("dead latents", "dead_latents"), ("dense latents (>10%)", "dense_latents")]  # fmt: skip
    for label, key in rows:
        print(f"  {label:<22} {_fmt(m[key])}")


@app.command("eval")
def eval_command(
    sae: Annotated[Path, typer.Argument(help="SAE directory or sae.safetensors.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="The model (default: the path recorded in the SAE); must be the one it was "
            "trained on."
        ),
    ] = None,  # fmt: skip
    at: Annotated[
        str | None, typer.Option("--at", help="Refuse unless the SAE is at this.")
    ] = None,
    windows: Annotated[int, typer.Option(help="Val windows of n_ctx tokens.")] = 64,
    out: Annotated[
        Path | None, typer.Option(help="Metrics JSON (default <sae dir>/eval.json).")
    ] = None,
    histogram: Annotated[
        Path | None, typer.Option(help="Latent-density PNG (default <sae dir>/density.png).")
    ] = None,  # fmt: skip
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = 0,
) -> None:
    """SAEBench core metrics on held-out tokens: L0, explained variance, CE recovered, ..."""
    from sparsecircuits.fileformat import check_writable_dir, write_json
    from sparsecircuits.sae.evaluate import density_histogram, evaluate_sae, val_windows
    from sparsecircuits.sae.sae_file import check_fits, check_location_matches, load_sae

    _setup(threads)
    if windows < 1:
        raise SAEError(f"--windows must be >= 1, got {windows}")
    handle = load_sae(sae)
    check_location_matches(handle, at)
    out = out or handle.path.parent / "eval.json"
    histogram = histogram or handle.path.parent / "density.png"
    for path in (out, histogram):
        check_writable_dir(path.parent, "output directory", SAEError)
        if path.is_dir():
            raise SAEError(f"{path} is a directory")
    loaded = _load_model(handle, checkpoint, device)
    check_fits(handle, loaded)
    doc, density = evaluate_sae(loaded, handle, val_windows(loaded, windows))
    write_json(out, doc, indent=2)
    density_histogram(density, histogram, f"{handle.path} ({handle.location})")
    print_metrics(doc)
    print(f"\nwrote {out} and {histogram}")


def _load_model(handle, checkpoint: Path | None, device: str):
    from sparsecircuits.checkpoint import load_checkpoint

    if checkpoint is None:
        recorded = handle.meta["model"].get("path")
        if not isinstance(recorded, str) or not Path(recorded).exists():
            raise SAEError(f"the model the SAE was trained on ({recorded}) is not there; give "
                           "it with --checkpoint")  # fmt: skip
        checkpoint = Path(recorded)
    return load_checkpoint(checkpoint, device=device)


@app.command("export-saelens")
def export_command(
    sae: Annotated[Path, typer.Argument(help="SAE directory or sae.safetensors.")],
    out: Annotated[Path, typer.Option(help="Directory for cfg.json + sae_weights.safetensors.")],
) -> None:
    """Write the SAE in SAELens 6's format (cfg.json + sae_weights.safetensors)."""
    from sparsecircuits.sae.sae_file import load_sae
    from sparsecircuits.sae.saelens import export_saelens

    handle = load_sae(sae)
    if out.resolve() == handle.path.parent.resolve():
        raise SAEError("--out must not be the SAE's own directory")
    print(f"wrote {export_saelens(handle, out)}")


@app.command("import-saelens")
def import_command(
    directory: Annotated[Path, typer.Argument(help="SAELens SAE directory (cfg.json + weights).")],
    out: Annotated[Path, typer.Option(help="Our SAE directory to write.")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="The model the SAE belongs to (needed unless sparsecircuits exported it)."
        ),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Its location (default: hook_name).")
    ] = None,
) -> None:
    """Read a SAELens 6 TopK SAE into our format (checked against --checkpoint if given)."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.fileformat import check_writable_dir
    from sparsecircuits.sae.sae_file import SAE_FILE, SAEHandle, check_fits, save_sae
    from sparsecircuits.sae.saelens import import_saelens

    check_writable_dir(out, "--out", SAEError)
    if (out / SAE_FILE).exists():
        raise SAEError(f"{out} already holds an SAE; choose another --out")
    loaded = load_checkpoint(checkpoint) if checkpoint is not None else None
    sae, doc = import_saelens(directory, loaded, at)
    if loaded is not None:
        check_fits(SAEHandle(sae, doc, directory), loaded)
    print(f"wrote {save_sae(out, sae, doc)}")


@app.command("steer")
def steer_command(
    sae: Annotated[Path, typer.Argument(help="SAE directory or sae.safetensors.")],
    latent: Annotated[int, typer.Option(help="Latent index to intervene on.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")],
    scale: Annotated[float | None, typer.Option(help="Multiply the latent by this.")] = None,
    clamp: Annotated[float | None, typer.Option(help="Set the latent to this value.")] = None,
    clamp_max: Annotated[
        float | None, typer.Option(help="Set the latent to this many times its max activation.")
    ] = None,
    ablate: Annotated[bool, typer.Option("--ablate", help="Set the latent to 0.")] = False,
    checkpoint: Annotated[
        Path | None, typer.Option(help="The model (default: the path recorded in the SAE).")
    ] = None,
    tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 32,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 = greedy.")] = 0.0,
    top_k: Annotated[int | None, typer.Option(help="Sample from the k likeliest tokens.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed (the same for both runs).")] = 0,
    windows: Annotated[int, typer.Option(help="Val windows scanned for --clamp-max's max.")] = 64,
) -> None:
    """Generate without and with an intervention on one SAE latent (error term kept).

    The same as `sparsecircuits steer CKPT --sae SAE --latent N ...`.
    """
    ops = [("scale", scale), ("clamp", clamp), ("clamp_max", clamp_max)]
    chosen = [(op, v) for op, v in ops if v is not None] + ([("ablate", None)] if ablate else [])
    if len(chosen) != 1:
        raise SAEError("give exactly one of --scale, --clamp, --clamp-max, --ablate")
    steer_latent_cli(sae, checkpoint, latent, *chosen[0], prompt, tokens, temperature, top_k,
                     seed, windows)


def steer_latent_cli(sae: Path, checkpoint: Path | None, latent: int, op: str,
                     value: float | None, prompt: str, tokens: int, temperature: float,
                     top_k: int | None, seed: int, windows: int) -> None:  # fmt: skip
    """Print both generations: the one implementation of `sae steer` and `steer --sae`."""
    from sparsecircuits.sae.evaluate import val_windows
    from sparsecircuits.sae.sae_file import check_fits, load_sae
    from sparsecircuits.sae.steering import (
        check_latent,
        describe_op,
        latent_hook,
        latent_max,
        resolve_op,
    )
    from sparsecircuits.train.sampling import check_sampling, generate_text

    if not prompt:
        raise SAEError("--prompt must not be empty")
    if windows < 1:
        raise SAEError(f"--windows must be >= 1, got {windows}")
    check_sampling(tokens, temperature, top_k, seed)
    resolve_op(op, value, 0.0)  # the value's checks, before anything is loaded
    handle = load_sae(sae)
    check_latent(handle, latent)
    loaded = _load_model(handle, checkpoint, "cpu")
    check_fits(handle, loaded)
    peak = None
    if op == "clamp_max":
        peak = latent_max(loaded, handle, latent, val_windows(loaded, windows)[:, :-1])
    hook = latent_hook(handle.sae, latent, *resolve_op(op, value, peak))
    plain = generate_text(loaded, prompt, tokens, temperature, top_k, seed)
    steered = generate_text(loaded, prompt, tokens, temperature, top_k, seed,
                            {handle.location: hook})  # fmt: skip
    print("--- without intervention ---")
    print(plain)
    print(f"--- with latent {latent} of {handle.location} {describe_op(op, value, peak)} ---")
    print(steered)
