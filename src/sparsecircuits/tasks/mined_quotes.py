"""A quote-closing task mined from real code: does a circuit hold beyond its templates?

`single_double_quote` asks for the closing quote in generated one-liners. This module finds
the same question in real files, with Python's own `tokenize` (not the task templates): every
string literal that

- is on one line (a backslash-continued string spans lines and is left out),
- is opened by one `'` or `"` (triple-quoted strings are left out),
- is not an f-string (Python 3.12 tokenizes those into pieces; 3.11 does not: leaving them
  out gives the same set everywhere); `r`, `b`, `u` and `rb` prefixes are kept,

gives one example: the file's text up to (not including) the closing quote, with the two
quote types as candidates. The candidates are the quote followed by `suffix`: with the default
`""` they are the lone tokens `"` and `'`; with `suffix=")"` they are `")` and `')`, the
candidates of `single_double_quote`, and only strings followed by `)` qualify.

Byte-level BPE merges a closing quote with the punctuation after it (`")`, `",`, `':` are
single tokens in the demo tokenizer), and then the real code never asks the model for a lone
quote. So an example is kept only if, with the rest of its line as the continuation, the
tokenizer check of `encoding.py` passes: the candidate is exactly the next token the real
text gives. The examples are written in the JSONL task format (`jsonl_task.py`), with the
file, line, column and string prefix as metadata (docs/usage.md).
"""

from __future__ import annotations

import io
import json
import random
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsecircuits.errors import TaskError
from sparsecircuits.fileformat import atomic_write_text
from sparsecircuits.tasks.base import TaskExample
from sparsecircuits.tasks.encoding import ExampleChecker

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from sparsecircuits.checkpoint import Loaded

QUOTES = ('"', "'")
"""Class 0 = double quote, class 1 = single quote (as in single_double_quote)."""
CHECK_CHUNK = 256
"""Examples checked against the tokenizer per call (the check has a fixed cost per call)."""


@dataclass(frozen=True)
class Closing:
    """The closing quote of one string literal in a file."""

    offset: int
    """Character offset of the closing quote in the file's text."""
    line: int
    """1-based line of the closing quote (tokenize's numbering)."""
    col: int
    """0-based column (in characters) of the closing quote."""
    quote: str
    """`"` or `'`."""
    prefix: str
    """The literal's prefix letters as written (``, `r`, `b`, `rb`, ...)."""


def string_closings(text: str) -> list[Closing]:
    """Closing quotes of the single-line, single-quote-character, non-f string literals of a
    file, in order; [] for a file `tokenize` rejects (not Python 3 source)."""
    line_starts = [0]
    for line in io.StringIO(text):  # the same lines tokenize reads
        line_starts.append(line_starts[-1] + len(line))
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type != tokenize.STRING or tok.start[0] != tok.end[0]:
                continue
            body = tok.string.lstrip("rRbBuUfF")
            prefix = tok.string[: len(tok.string) - len(body)]
            if "f" in prefix.lower() or body[:3] in ('"""', "'''"):
                continue
            line, end_col = tok.end
            out.append(Closing(line_starts[line - 1] + end_col - 1, line, end_col - 1,
                               body[0], prefix))  # fmt: skip
    except (tokenize.TokenError, SyntaxError):
        return []
    return out


def _context_start(text: str, offset: int, max_chars: int) -> int:
    """Where a context ending at `offset` starts: the first line start within `max_chars`
    (a whole line), or `offset - max_chars` when the last line alone is longer."""
    lo = max(0, offset - max_chars)
    if lo == 0:
        return 0
    newline = text.find("\n", lo - 1, offset)
    return newline + 1 if newline != -1 else lo


def closing_example(text: str, c: Closing, suffix: str, max_chars: int, source: str) -> TaskExample:
    """The example of one closing quote: context up to it, the two quote types (+ suffix) as
    candidates, the rest of the line as the continuation."""
    after = c.offset + 1 + len(suffix)
    line_end = text.find("\n", after)
    continuation = text[after : line_end if line_end != -1 else len(text)].rstrip("\r")
    other = QUOTES[1] if c.quote == QUOTES[0] else QUOTES[0]
    meta = {"source": source, "line": c.line, "col": c.col, "prefix": c.prefix}
    return TaskExample(
        context=text[_context_start(text, c.offset, max_chars) : c.offset],
        correct=c.quote + suffix,
        wrong=other + suffix,
        label=QUOTES.index(c.quote),
        continuation=continuation,
        metadata=meta,
    )


@dataclass
class MinedQuotes:
    """The mined examples and what was seen on the way."""

    examples: list[TaskExample]
    files: int = 0
    """Source files read."""
    untokenizable_files: int = 0
    """Files `tokenize` rejected (left out whole)."""
    strings: int = 0
    """Qualifying string literals found (before the suffix and tokenizer checks)."""
    with_suffix: int = 0
    """Of those, the ones followed by the suffix, with a distinct context."""
    checked: int = 0
    """Examples checked against the tokenizer."""
    rejected: int = 0
    """Of those, the ones whose quote (+ suffix) is not the next token the real text gives."""
    per_class: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "examples"}


def mine_quotes(
    files: Iterable[tuple[str, str]],
    tokenizer: Tokenizer,
    n: int,
    suffix: str = "",
    seed: int = 0,
    max_context_chars: int = 2000,
    balance: bool = True,
) -> MinedQuotes:
    """Up to `n` examples from `(name, text)` files, drawn (seeded) among all qualifying
    strings; with `balance`, as many of each quote type (at most n/2 each: real code has far
    more of one, and accuracy should not be won by always answering it). TaskError if the
    candidates are not single tokens in `tokenizer`."""
    if n < 1:
        raise TaskError(f"--n must be >= 1, got {n}")
    if max_context_chars < 1:
        raise TaskError(f"max_context_chars must be >= 1, got {max_context_chars}")
    checker = ExampleChecker(tokenizer)
    bad = [q + suffix for q in QUOTES if checker.candidate_id(q + suffix) is None]
    if bad:
        raise TaskError(
            f"candidates that are not single tokens in this tokenizer: "
            f"{', '.join(repr(b) for b in bad)} (choose another --suffix)"
        )
    result = MinedQuotes(examples=[])
    pool: list[TaskExample] = []
    seen: set[str] = set()
    for name, text in files:
        result.files += 1
        closings = string_closings(text)
        if not closings and ('"' in text or "'" in text) and not _tokenizes(text):
            result.untokenizable_files += 1
        for c in closings:
            result.strings += 1
            if text[c.offset + 1 : c.offset + 1 + len(suffix)] != suffix:
                continue
            ex = closing_example(text, c, suffix, max_context_chars, name)
            if ex.context and ex.context not in seen:
                seen.add(ex.context)
                pool.append(ex)
    result.with_suffix = len(pool)
    random.Random(seed).shuffle(pool)
    quota = [n // 2 + n % 2, n // 2] if balance else [n, n]
    taken = [0, 0]
    for start in range(0, len(pool), CHECK_CHUNK):
        if sum(taken) >= n:
            break
        chunk = [
            ex for ex in pool[start : start + CHECK_CHUNK] if taken[ex.label] < quota[ex.label]
        ]
        failures = checker.boundary_failures(chunk)
        result.checked += len(chunk)
        for ex, failure in zip(chunk, failures, strict=True):
            if failure is not None:
                result.rejected += 1
            elif taken[ex.label] < quota[ex.label] and sum(taken) < n:
                taken[ex.label] += 1
                result.examples.append(ex)
    if balance:  # as many of each class: drop the last-drawn surplus of the larger one
        keep = min(taken)
        counts = [0, 0]
        balanced = []
        for ex in result.examples:
            counts[ex.label] += 1
            if counts[ex.label] <= keep:
                balanced.append(ex)
        result.examples, taken = balanced, [keep, keep]
    result.per_class = {f"{QUOTES[i]}{suffix}": taken[i] for i in range(2)}
    if not result.examples:
        raise TaskError(
            f"no quote-closing examples found in {result.files} files ({result.strings} "
            f"strings, {result.with_suffix} followed by {suffix!r}, {result.rejected} rejected "
            f"by the tokenizer check; kept per quote type: {result.per_class})"
        )
    return result


def _tokenizes(text: str) -> bool:
    try:
        for _ in tokenize.generate_tokens(io.StringIO(text).readline):
            pass
    except (tokenize.TokenError, SyntaxError):
        return False
    return True


def split_files(loaded: Loaded, split: str = "test") -> Iterator[tuple[str, str]]:
    """(name, text) of every file of a checkpoint's pretraining `split`, decoded from its token
    shard (byte-level BPE decodes to the exact text; files are separated by EOT). Names come
    from the data cache's files.json when it lists as many files, else `<split>/<index>`."""
    import numpy as np

    from sparsecircuits.circuits.ablation import pretraining_shard
    from sparsecircuits.data.prepare import FILES_FILE
    from sparsecircuits.data.tokenizer import eot_id

    shard = pretraining_shard(loaded, split)
    tokens = np.asarray(shard.tokens)
    ends = np.flatnonzero(tokens == eot_id(loaded.tokenizer)).tolist()
    names: list[str] = []
    try:
        doc = json.loads((shard.path.parent / FILES_FILE).read_text(encoding="utf-8"))
        names = [str(x) for x in doc["splits"][split]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if len(names) != len(ends):
        names = [f"{split}/{i}" for i in range(len(ends))]
    start = 0
    for name, end in zip(names, ends, strict=True):
        ids = tokens[start:end].tolist()
        start = end + 1
        yield name, loaded.tokenizer.decode(ids, skip_special_tokens=False)


def example_line(ex: TaskExample) -> str:
    """One line of the JSONL task format (`jsonl_task.py`)."""
    doc = {"context": ex.context, "correct": ex.correct, "wrong": ex.wrong, "label": ex.label,
           "continuation": ex.continuation, **ex.metadata}  # fmt: skip
    return json.dumps(doc, ensure_ascii=False)


def write_task(examples: list[TaskExample], out: Path) -> Path:
    """Write the examples as a JSONL task file (atomically; an error leaves `out` as it was)."""
    if out.suffix != ".jsonl":
        raise TaskError(f"--out must end in .jsonl (a task file), got {out}")
    try:
        atomic_write_text(out, "".join(example_line(ex) + "\n" for ex in examples))
    except OSError as exc:
        raise TaskError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
