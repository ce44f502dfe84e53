"""A user-defined task read from a JSONL file: one `{"context", "correct", "wrong"}` per line.

It runs through the same code path as the built-in tasks: the same split rule (a hash of the
context, fractions 1/2, 1/4, 1/4; the splits hold whatever the file holds), the same tokenizer
check and the same metrics. An optional integer `label` (0 or 1) gives the class; without it,
the class is 0 when `correct` sorts before `wrong` and 1 otherwise, so that a file of
`")`/`')` examples gets the same two classes as single_double_quote. An optional
`continuation` string is checked like a built-in task's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import Task, TaskExample

_REQUIRED = ("context", "correct", "wrong")
_OPTIONAL = ("label", "continuation")
# Stop listing problems after this many; the count of the rest is still reported.
_MAX_LISTED = 10


def _parse_line(line: str) -> tuple[TaskExample | None, str | None]:
    """An example, or an error message for this line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None, "not JSON"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        return None, "missing key " + ", ".join(repr(k) for k in missing)
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        return None, "unknown key " + ", ".join(repr(k) for k in unknown)
    for key in (*_REQUIRED, "continuation"):
        if key in obj and not isinstance(obj[key], str):
            return None, f"{key!r} must be a string"
    for key in _REQUIRED:
        if obj[key] == "":
            return None, f"{key!r} is empty"
    if obj["correct"] == obj["wrong"]:
        return None, "'correct' and 'wrong' are the same"
    label = obj.get("label", 0 if obj["correct"] < obj["wrong"] else 1)
    if type(label) is not int or label not in (0, 1):
        return None, "'label' must be 0 or 1"
    ex = TaskExample(
        obj["context"], obj["correct"], obj["wrong"], label, obj.get("continuation", "")
    )
    return ex, None


def read_jsonl_examples(path: Path) -> list[TaskExample]:
    """All examples of a file; TaskError listing every malformed line by number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskError(f"{path}: no such task file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot be read ({exc})") from None
    examples: list[TaskExample] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are allowed
        ex, err = _parse_line(line)
        if err is not None:
            errors.append(f"line {number}: {err}")
        else:
            examples.append(ex)
    if errors:
        listed = "; ".join(errors[:_MAX_LISTED])
        more = f"; and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise TaskError(f"{path}: {listed}{more}")
    if not examples:
        raise TaskError(f"{path}: no examples (expected one JSON object per line)")
    return examples


class JsonlTask(Task):
    """A task whose examples are the lines of a JSONL file (read when the object is made)."""

    source = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.examples = read_jsonl_examples(path)
        # Instance attributes shadow the class-level ones of Task.
        self.name = str(path)  # type: ignore[misc]
        self.description = f"user task from {path} ({len(self.examples)} examples)"  # type: ignore[misc]

    @property
    def finite(self) -> bool:
        return True

    def generate(self, rng: random.Random) -> TaskExample:
        return rng.choice(self.examples)

    def groups(self, rng: random.Random) -> Iterator[tuple[TaskExample, ...]]:
        # File order, one example per group: the split is a hash of the example's context.
        for ex in self.examples:
            yield (ex,)
