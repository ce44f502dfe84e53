"""Train a model for an experiment, or reuse the finished run already in its directory.

Experiments are long, so every model lives in its own run directory under the experiment's
output: running the experiment again reuses finished runs, resumes interrupted ones, and
refuses a directory that holds a run of a different config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.config import RunConfig
from sparsecircuits.errors import CheckpointError
from sparsecircuits.train.trainer import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    """A finished experiment run."""

    run_dir: Path
    config: RunConfig
    val_loss: float
    """Val loss (nats/token) at the last step, on the trainer's eval batches."""
    steps: int
    tokens: int
    nonzeros: int
    """Nonzero entries of the sparse-constrained matrices (all of them for a dense model)."""


def existing_model(path: Path) -> TrainedModel:
    """A model trained elsewhere (a run directory or a zoo model), as an experiment run."""
    path = Path(path)
    resolved = ckpt.resolve(path)  # CheckpointError naming the path if there is none
    meta = ckpt.read_meta(resolved)
    cfg = ckpt.read_config(resolved)
    if "val_loss" not in meta:
        raise CheckpointError(f"{path} records no val loss; it cannot be matched to another model")
    step = int(meta.get("step", 0))
    return TrainedModel(
        run_dir=path,
        config=cfg,
        val_loss=float(meta["val_loss"]),
        steps=step,
        tokens=step * cfg.train.batch_size * cfg.model.n_ctx,
        nonzeros=int(sum(meta.get("nonzeros", {}).values())),
    )


def train_or_reuse(
    cfg: RunConfig, run_dir: Path, stop_below: float | None = None, progress: bool = True
) -> TrainedModel:
    """The run in `run_dir`: reused when finished, resumed when interrupted, else trained."""
    done = _finished(cfg, run_dir, stop_below)
    if done is None:
        resume = ckpt.run_has_checkpoint(run_dir)
        log.info("%s %s", "resuming" if resume else "training", run_dir)
        train(cfg, run_dir, resume=resume, progress=progress, stop_below=stop_below)
        done = _finished(cfg, run_dir, stop_below)
        assert done is not None, "a completed training run must be reusable"
    return done


def _finished(cfg: RunConfig, run_dir: Path, stop_below: float | None) -> TrainedModel | None:
    if not ckpt.run_has_checkpoint(run_dir):
        return None
    path = ckpt.resolve(run_dir)
    meta = ckpt.read_meta(path)
    if ckpt.read_config(path).to_dict() != cfg.to_dict():
        raise CheckpointError(
            f"{run_dir} holds a run of a different config; remove it or choose another --out"
        )
    step = int(meta.get("step", 0))
    stopped = stop_below is not None and meta.get("stopped_below") == stop_below
    if step < cfg.train.steps and not stopped:
        return None
    return TrainedModel(
        run_dir=run_dir,
        config=cfg,
        val_loss=float(meta["val_loss"]),
        steps=step,
        tokens=step * cfg.train.batch_size * cfg.model.n_ctx,
        nonzeros=int(sum(meta.get("nonzeros", {}).values())),
    )
