"""`sae eval`: SAEBench's core metrics of an SAE on held-out (val) pretraining tokens.

Each batch of fixed val windows runs through the model three times: clean (recording x at the
SAE's location), with x replaced by the SAE's reconstruction, and with x replaced by zeros.
The formulas are in `sae.metrics` and docs/sae.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.circuits.ablation import pretraining_shard
from sparsecircuits.data.shards import eval_starts
from sparsecircuits.errors import SAEError
from sparsecircuits.fileformat import write_figure
from sparsecircuits.sae.metrics import DENSE_THRESHOLD, ReconstructionSums, SplicingSums
from sparsecircuits.sae.sae_file import SAEHandle

EVAL_FORMAT = "sparsecircuits.sae-eval"
EVAL_VERSION = 1
BATCH_WINDOWS = 8


def val_windows(loaded: Loaded, n_windows: int) -> Tensor:
    """`n_windows` fixed windows [n, n_ctx + 1] spread over the val shard (inputs + targets)."""
    shard = pretraining_shard(loaded, "val")
    window = loaded.config.model.n_ctx + 1
    if len(shard) < window:
        raise SAEError(f"the val shard has {len(shard)} tokens, fewer than one window")
    return shard.windows(eval_starts(len(shard), window, n_windows), window)


@torch.no_grad()
def evaluate_sae(loaded: Loaded, handle: SAEHandle, windows: Tensor,
                 dense_threshold: float = DENSE_THRESHOLD) -> tuple[dict[str, Any], Tensor]:  # fmt: skip
    """The metrics document and the per-latent density [d_sae] over `windows` [n, seq + 1]."""
    model, sae, location = loaded.model, handle.sae, handle.location
    device = next(model.parameters()).device
    sae = sae.to(device).eval()
    recon = ReconstructionSums(sae.d_in, sae.d_sae)
    splice = SplicingSums()
    seen: dict[str, Tensor] = {}  # this batch's x, z and x_hat, filled by the hooks

    def record(x: Tensor) -> Tensor:
        seen["x"] = x
        return x

    def reconstruct(x: Tensor) -> Tensor:
        seen["z"] = sae.encode(x)
        seen["x_hat"] = sae.decode(seen["z"])
        return seen["x_hat"]

    for start in range(0, len(windows), BATCH_WINDOWS):
        chunk = windows[start : start + BATCH_WINDOWS].to(device)
        inputs, targets = chunk[:, :-1], chunk[:, 1:]
        clean = model(inputs, hooks={location: record})
        spliced = model(inputs, hooks={location: reconstruct})
        zeroed = model(inputs, hooks={location: torch.zeros_like})
        recon.add(seen["x"], seen["x_hat"], seen["z"])
        splice.add(targets, clean, spliced, zeroed)
    metrics = {**recon.metrics(dense_threshold), **splice.metrics()}
    doc = {
        "format": EVAL_FORMAT,
        "format_version": EVAL_VERSION,
        "sae": str(handle.path),
        "model": str(loaded.path),
        "location": location,
        "architecture": handle.meta["architecture"],
        "k": sae.k,
        "split": "val",
        "windows": len(windows),
        "dense_threshold": dense_threshold,
        "metrics": metrics,
        "definitions": "docs/sae.md; explained variance is around the mean",
    }
    return doc, recon.density()


def density_histogram(density: Tensor, path: Path, title: str) -> Path:
    """PNG of log10(latent density) over latents; dead latents counted in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alive = density[density > 0]
    dead = int((density == 0).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if len(alive):
        ax.hist(alive.log10().numpy(), bins=50, color="tab:blue")
    ax.axvline(-1, color="tab:red", lw=1, ls="--", label="dense (> 10% of tokens)")
    ax.set_xlabel("log10(fraction of tokens the latent is active on)")
    ax.set_ylabel("latents")
    ax.set_title(f"{title}\n{len(density)} latents, {dead} dead (never active)", fontsize=9)
    ax.legend(fontsize=8)
    return write_figure(path, fig)
