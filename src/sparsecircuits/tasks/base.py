"""What a task is: examples (context, correct next token, wrong next token) and their splits.

A task is a binary next-token choice on Python code (docs/method.md §4). Built-in tasks are
generators: each template draw gives a *pair* of examples, one per class, whose contexts differ
only in the feature the task is about (`print("abc` -> `")` and `print('abc` -> `')`), with
the candidates swapped. Both classes are therefore exactly balanced, and so is every split,
because a pair always lands in one split (see `splits.py`).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sparsecircuits.errors import TaskError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskExample:
    """One binary next-token choice."""

    context: str
    """The text the model reads; it ends exactly where the choice is made."""
    correct: str
    """The correct next token, as text (leading space included, e.g. `' as'`)."""
    wrong: str
    """The wrong next token, as text."""
    label: int = 0
    """Which of the task's two classes this example belongs to (0 or 1)."""
    continuation: str = ""
    """Text that follows `correct` in the code the example was cut from. The tokenizer check
    verifies that `context + correct + continuation` really tokenizes with `correct` as the one
    token after the context, so the model is asked for a token it would actually emit."""
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Anything else a user task's line carries (`{"source": ..., "id": ...}`), shown by
    `tasks show`; it plays no part in splits, checks or metrics."""


@dataclass(frozen=True)
class SplitSizes:
    """How many examples each split holds (generated tasks; a JSONL task holds its file)."""

    train: int = 512
    """Examples in the train split (the pruner optimises masks on these)."""
    val: int = 256
    """Examples in the validation split (bisection / model selection)."""
    test: int = 256
    """Examples in the test split (reported numbers)."""

    def __post_init__(self) -> None:
        for split in SPLITS:
            if getattr(self, split) < 0:
                raise TaskError(f"split size {split} must be >= 0, got {getattr(self, split)}")

    def get(self, split: str) -> int:
        check_split(split)
        return getattr(self, split)

    @property
    def total(self) -> int:
        return self.train + self.val + self.test


@dataclass(frozen=True)
class TaskSplits:
    """The examples of one task, split into train / val / test (no context in two splits)."""

    task: str
    """Name of the task."""
    train: tuple[TaskExample, ...]
    val: tuple[TaskExample, ...]
    test: tuple[TaskExample, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    """Counts from generation: 'duplicates' skipped, 'checked' and 'dropped' by the tokenizer
    boundary check (a small share may be dropped; a large one is an error)."""

    def get(self, split: str) -> tuple[TaskExample, ...]:
        check_split(split)
        return getattr(self, split)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def task_seed(name: str, seed: int) -> int:
    """A 64-bit seed for one task from its name and a base seed (stable across processes)."""
    digest = hashlib.sha256(f"sparsecircuits.tasks:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Task(ABC):
    """A named binary next-token task; subclasses say how examples are produced."""

    name: ClassVar[str]
    """Registry name (docs/method.md §4 for the built-in ones)."""
    description: ClassVar[str]
    """One line: what the choice is, and the candidate tokens."""
    source: ClassVar[str] = "builtin"
    """'builtin', 'adversarial' (a variant where the paper predicts failures) or 'jsonl'."""
    class_names: ClassVar[tuple[str, str]] = ("class 0", "class 1")
    """What label 0 and label 1 mean, for viewers that show activations per class."""

    @abstractmethod
    def groups(self, rng: random.Random) -> Iterator[tuple[TaskExample, ...]]:
        """Examples in the order they are considered for the splits, in groups that must share
        a split (a pair of classes from one template draw; one example for a file task)."""

    @property
    def finite(self) -> bool:
        """True when `groups` ends by itself (a file): then splits hold everything it gives."""
        return False

    def generate(self, rng: random.Random) -> TaskExample:
        """One raw example (either class)."""
        group = next(self.groups(rng))
        return group[rng.randrange(len(group))]

    def oracle(self, context: str) -> str:
        """The correct candidate, computed from the text alone (the rule the task tests)."""
        raise NotImplementedError(f"task {self.name} has no oracle")

    def splits(
        self,
        sizes: SplitSizes | None = None,
        seed: int = 0,
        tokenizer: Tokenizer | None = None,
    ) -> TaskSplits:
        """Deterministic disjoint splits; with a tokenizer, every example is checked (and a
        task that cannot be expressed in it raises TaskError)."""
        from sparsecircuits.tasks.splits import build_splits

        rng = random.Random(task_seed(self.name, seed))
        return build_splits(
            self.name, self.groups(rng), sizes or SplitSizes(), tokenizer, finite=self.finite
        )


class PairTask(Task):
    """A generated task: every template draw gives one example of each class."""

    @abstractmethod
    def draw(self, rng: random.Random) -> tuple[TaskExample, TaskExample]:
        """Examples of class 0 and class 1 from one template draw."""

    def groups(self, rng: random.Random) -> Iterator[tuple[TaskExample, ...]]:
        for _ in itertools.count():
            yield self.draw(rng)


def pair(
    contexts: tuple[str, str],
    candidates: tuple[str, str],
    continuations: tuple[str, str] = ("", ""),
) -> tuple[TaskExample, TaskExample]:
    """Two examples, one per class: class c has context c, correct candidate c, and the other
    class's candidate as the wrong one. Symmetric by construction, so a model that ignores the
    context scores exactly 50% on any set of whole pairs."""
    a = TaskExample(contexts[0], candidates[0], candidates[1], 0, continuations[0])
    b = TaskExample(contexts[1], candidates[1], candidates[0], 1, continuations[1])
    return a, b
