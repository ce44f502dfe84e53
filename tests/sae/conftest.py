"""Fixtures for the SAE tests: the tiny model, and a tiny SAE trained on it in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.sae.config import SAETrainConfig

TINY_SAE = SAETrainConfig(
    location="1.resid_mid",
    k=8,
    expansion=4,
    tokens=256 * 12,
    batch_size=256,
    buffer_windows=8,
    dead_tokens=1024,
    warmup_steps=3,
    checkpoint_every=5,
)
"""12 steps of 256 tokens on the tiny model (d_model 32): d_sae 128."""


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    return load_checkpoint(tiny_run)


@pytest.fixture(scope="session")
def tiny_sae(tiny_loaded, tmp_path_factory) -> Path:
    """A trained tiny SAE directory (sae.safetensors + trainer.safetensors)."""
    from sparsecircuits.sae.trainer import train_sae

    out = tmp_path_factory.mktemp("tiny-sae")
    train_sae(tiny_loaded, TINY_SAE, out, progress=False)
    return out
