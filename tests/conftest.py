"""Shared fixtures: a tiny real training run on a small slice of the standard library."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecircuits.config import RunConfig, load_config


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One tokenizer/shard cache for the whole session (built on first use)."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="session")
def tiny_config(data_cache) -> RunConfig:
    return load_config("tiny", {"data.cache_dir": str(data_cache)})


@pytest.fixture(scope="session")
def tiny_run(tiny_config, tmp_path_factory) -> Path:
    """A finished tiny training run (checkpoint at <run>/checkpoint)."""
    from sparsecircuits.train.trainer import train

    out = tmp_path_factory.mktemp("tiny-run")
    train(tiny_config, out, progress=False)
    return out
