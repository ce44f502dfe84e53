"""Fixtures for the circuits stage: a user task the tiny model's tokenizer can express."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecircuits.checkpoint import load_checkpoint
from tests.bracket_task import write_bracket_task


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    return load_checkpoint(tiny_run)


@pytest.fixture(scope="session")
def bracket_task(tiny_loaded, tmp_path_factory) -> Path:
    """A JSONL task (close `f(...` with `)` and `f[...` with `]`) in the tiny tokenizer."""
    path = tmp_path_factory.mktemp("tasks") / "bracket.jsonl"
    return write_bracket_task(tiny_loaded.tokenizer, path, n=120, max_words=4)
