"""Fixtures for the circuits stage: a user task the tiny model's tokenizer can express."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.tasks.base import TaskExample
from sparsecircuits.tasks.encoding import ExampleChecker

WORDS = ("alpha", "beta", "gamma", "delta", "value", "name", "data", "item", "self", "key")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    return load_checkpoint(tiny_run)


@pytest.fixture(scope="session")
def bracket_task(tiny_loaded, tmp_path_factory) -> Path:
    """A JSONL task (close `f(...` with `)` and `f[...` with `]`) in the tiny tokenizer."""
    checker = ExampleChecker(tiny_loaded.tokenizer)
    rng = random.Random(0)
    lines = []
    while len(lines) < 120:
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        opener = rng.choice("([")
        correct, wrong = (")", "]") if opener == "(" else ("]", ")")
        ex = TaskExample(f"x = f{opener}{body}", correct, wrong)
        if checker.offending_candidates(ex) or checker.boundary_failures([ex])[0]:
            continue
        lines.append(json.dumps({"context": ex.context, "correct": correct, "wrong": wrong}))
    path = tmp_path_factory.mktemp("tasks") / "bracket.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
