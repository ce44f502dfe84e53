"""A JSONL task in any tokenizer: close `f(...` with `)` and `f[...` with `]`."""

from __future__ import annotations

import json
import random
from pathlib import Path

from sparsecircuits.tasks.base import TaskExample
from sparsecircuits.tasks.encoding import ExampleChecker

WORDS = ("alpha", "beta", "gamma", "delta", "value", "name", "data", "item", "self", "key")


def write_bracket_task(tokenizer, path: Path, n: int, max_words: int) -> Path:
    """`n` examples the tokenizer can express (candidates single tokens, clean boundaries)."""
    checker, rng, lines = ExampleChecker(tokenizer), random.Random(0), []
    while len(lines) < n:
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words)))
        opener = rng.choice("([")
        correct, wrong = (")", "]") if opener == "(" else ("]", ")")
        ex = TaskExample(f"x = f{opener}{body}", correct, wrong)
        if checker.offending_candidates(ex) or checker.boundary_failures([ex])[0]:
            continue
        lines.append(json.dumps({"context": ex.context, "correct": correct, "wrong": wrong}))
    path.write_text("\n".join(lines) + "\n")
    return path
