"""A user-defined task read from a JSONL file: one `{"context", "correct", "wrong"}` per line.

It runs through the same code path as the built-in tasks: the same split rule (a hash of the
context, fractions 1/2, 1/4, 1/4; the splits hold whatever the file holds), the same tokenizer
check and the same metrics. An optional integer `label` (0 or 1) gives the class; without it,
the class is 0 when `correct` sorts before `wrong` and 1 otherwise, so that a file of
`")`/`')` examples gets the same two classes as single_double_quote. An optional
`continuation` string is checked like a built-in task's. Any other key (`"source"`, `"id"`,
...) is kept as the example's metadata and shown by `tasks show`.

The file is read line by line with bounds on its size and on each line's, so a stray huge
file fails at once with one line instead of exhausting memory; contexts longer than a model
can read are cut before tokenizing (`encoding.py`).
"""

from __future__ import annotations

import codecs
import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import Task, TaskExample

_REQUIRED = ("context", "correct", "wrong")
_OPTIONAL = ("label", "continuation")
# Stop listing problems after this many; the count of the rest is still reported.
_MAX_LISTED = 10
MAX_FILE_BYTES = 256 * 2**20
"""Largest task file accepted (about a million typical examples)."""
MAX_LINE_BYTES = 4 * 2**20
"""Longest line accepted: one example, its context a whole large source file at most."""


def _lone_surrogate(obj: Any) -> str | None:
    """The first lone UTF-16 surrogate in any string of a parsed JSON value (JSON's `\\ud800`
    escapes decode to one, which is not text: it cannot be encoded, tokenized or printed)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.object[exc.start : exc.end]
    return None


def _parse_line(line: str) -> tuple[TaskExample | None, str | None]:
    """An example, or an error message for this line."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None, "not JSON"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    surrogate = _lone_surrogate(obj)
    if surrogate is not None:
        escaped = surrogate.encode("utf-8", "backslashreplace").decode("ascii")
        return None, f"holds a lone surrogate {escaped}, which is not valid Unicode text"
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        return None, "missing key " + ", ".join(repr(k) for k in missing)
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
    metadata = {k: v for k, v in obj.items() if k not in _REQUIRED and k not in _OPTIONAL}
    ex = TaskExample(
        obj["context"], obj["correct"], obj["wrong"], label, obj.get("continuation", ""), metadata
    )
    return ex, None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of each line of a task file; TaskError for a file or line too large, or
    a line that is not UTF-8 (read as bytes, so the number named is exact)."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise TaskError(f"{path}: not a file")
        if size > MAX_FILE_BYTES:
            raise TaskError(
                f"{path}: {size / 2**20:.1f} MiB is larger than the {MAX_FILE_BYTES // 2**20} "
                "MiB a task file may hold"
            )
        with open(path, "rb") as f:
            for number in itertools.count(1):
                raw = f.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                    raise TaskError(
                        f"{path}: line {number} is longer than {MAX_LINE_BYTES // 2**20} MiB "
                        "(one example per line)"
                    )
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)  # some editors write one
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise TaskError(
                        f"{path}: line {number} is not UTF-8 text ({exc.reason})"
                    ) from None
                yield number, text
    except FileNotFoundError:
        raise TaskError(f"{path}: no such task file") from None
    except OSError as exc:
        raise TaskError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_jsonl_examples(path: Path) -> list[TaskExample]:
    """All examples of a file; TaskError listing every malformed line by number."""
    examples: list[TaskExample] = []
    errors: list[str] = []
    for number, line in _lines(path):
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
