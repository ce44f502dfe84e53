"""Deterministic, disjoint train / val / test splits of a task's examples.

A group of examples (the pair of classes from one template draw) goes to the split chosen by a
hash of its contexts, with fixed fractions 1/2, 1/4, 1/4 that do not depend on the requested
sizes: asking for more examples only extends each split, the first n stay the same. Contexts
are deduplicated over the whole stream, so no context appears twice, let alone in two splits.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import SPLITS, SplitSizes, TaskExample, TaskSplits
from sparsecircuits.tasks.encoding import ExampleChecker

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Cumulative upper bounds of the hash bucket of train and val; the rest is test.
SPLIT_BOUNDS = (0.5, 0.75)
# A generator may need this many draws per requested example before it is declared too poor.
MAX_DRAWS_PER_EXAMPLE = 20
# Dropping examples that fail the boundary check is tolerated up to this share.
MAX_DROPPED_FRACTION = 0.1
# Stop early once it is clear the task does not fit the tokenizer.
_EARLY_STOP_CHECKED = 64
# Draws after which every candidate a task uses has been met (to list all offending ones).
_OFFENDING_PATIENCE = 256
# Groups drawn and checked at a time.
_CHUNK = 128


def split_of(contexts: Iterable[str]) -> str:
    """The split of a group, from a hash of its contexts (stable across runs and machines)."""
    digest = hashlib.sha256("\0".join(contexts).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    if u < SPLIT_BOUNDS[0]:
        return "train"
    return "val" if u < SPLIT_BOUNDS[1] else "test"


def build_splits(
    name: str,
    groups: Iterable[tuple[TaskExample, ...]],
    sizes: SplitSizes,
    tokenizer: Tokenizer | None = None,
    finite: bool = False,
) -> TaskSplits:
    """Fill the splits from a stream of groups, in stream order.

    A generated stream (`finite=False`) is read until every split holds its size; a finite one
    (a file) is read to the end and `sizes` is ignored. With a tokenizer, a group whose
    candidates are not single tokens or whose contexts fail the boundary check is left out;
    TaskError is raised if any candidate is not a single token (listing them), or if more than
    10% of the checked examples fail the boundary check (with one failure shown).
    """
    filler = _SplitFiller(name, sizes, tokenizer, finite)
    stream = iter(groups)
    max_groups = MAX_DRAWS_PER_EXAMPLE * sizes.total + 100
    while not filler.done():
        if not finite and filler.n_groups >= max_groups:
            break
        # Groups are checked in chunks (the tokenizer has a fixed cost per call); the result
        # is the same as taking them one by one, since splits only ever fill up.
        chunk = list(itertools.islice(stream, _CHUNK))
        if not chunk:
            break
        filler.add(chunk)
    return filler.result()


class _SplitFiller:
    """The state of `build_splits`: splits so far, contexts seen, and check statistics."""

    def __init__(
        self, name: str, sizes: SplitSizes, tokenizer: Tokenizer | None, finite: bool
    ) -> None:
        self.name = name
        self.finite = finite
        self.need = {s: sizes.get(s) for s in SPLITS}
        self.out: dict[str, list[TaskExample]] = {s: [] for s in SPLITS}
        self.checker = ExampleChecker(tokenizer) if tokenizer is not None else None
        self.seen: set[str] = set()
        self.offending: set[str] = set()
        self.n_groups = self.duplicates = self.checked = self.dropped = 0
        self.first_failure = ""
        self.hopeless = False

    def full(self, split: str) -> bool:
        return not self.finite and len(self.out[split]) >= self.need[split]

    def done(self) -> bool:
        if self.hopeless:
            return True
        return not self.finite and all(self.full(s) for s in SPLITS)

    def add(self, chunk: list[tuple[TaskExample, ...]]) -> None:
        todo: list[tuple[str, tuple[TaskExample, ...]]] = []
        for group in chunk:
            self.n_groups += 1
            for ex in group:
                if ex.correct == ex.wrong:
                    raise TaskError(f"task {self.name}: correct and wrong are both {ex.correct!r}")
            contexts = [ex.context for ex in group]
            if any(c in self.seen for c in contexts) or len(set(contexts)) < len(contexts):
                self.duplicates += len(group)
                continue
            self.seen.update(contexts)
            split = split_of(contexts)
            if self.full(split):
                continue
            if self.checker is not None:
                bad = [c for ex in group for c in self.checker.offending_candidates(ex)]
                if bad:
                    self.offending.update(bad)
                    continue
            todo.append((split, group))
        failures = self._check([ex for _, group in todo for ex in group])
        i = 0
        for split, group in todo:
            reasons = [f for f in failures[i : i + len(group)] if f]
            i += len(group)
            if self.full(split):
                continue
            if self.checker is not None:
                self.checked += len(group)
                if reasons:
                    self.dropped += len(group)
                    self.first_failure = self.first_failure or reasons[0]
                    continue
            self.out[split].extend(group)
        if self.offending and self.n_groups >= _OFFENDING_PATIENCE:
            self.hopeless = True  # every candidate of the task has been met by now
        if self.checked >= _EARLY_STOP_CHECKED and self.dropped > self.checked / 2:
            self.hopeless = True

    def _check(self, examples: list[TaskExample]) -> list[str | None]:
        if self.checker is None or not examples:
            return [None] * len(examples)
        return self.checker.boundary_failures(examples)

    def result(self) -> TaskSplits:
        name = self.name
        if self.offending:
            raise TaskError(
                f"task {name} cannot be expressed in this tokenizer: candidates that are not "
                f"single tokens: {', '.join(repr(c) for c in sorted(self.offending))}"
            )
        if self.checked and self.dropped > MAX_DROPPED_FRACTION * self.checked:
            raise TaskError(
                f"task {name}: {self.dropped} of {self.checked} examples fail the tokenizer "
                f"boundary check (the choice would not be made where the context ends), "
                f"e.g. {self.first_failure}"
            )
        out = self.out
        if self.finite:
            if not any(out.values()):
                raise TaskError(f"task {name} has no usable examples")
        else:
            short = [f"{s} {len(out[s])}/{self.need[s]}" for s in SPLITS if not self.full(s)]
            if short:
                raise TaskError(
                    f"task {name}: could only produce {', '.join(short)} examples with distinct "
                    f"contexts after {self.n_groups} draws (its templates are too poor)"
                )
            out = {s: out[s][: self.need[s]] for s in SPLITS}
        meta = {"duplicates": self.duplicates, "checked": self.checked, "dropped": self.dropped}
        return TaskSplits(name, *(tuple(out[s]) for s in SPLITS), meta=meta)
