"""The split builder and the tokenizer check, on small hand-made tasks."""

from __future__ import annotations

import random

import pytest

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks import SplitSizes, get_task
from sparsecircuits.tasks.base import PairTask, pair
from sparsecircuits.tasks.splits import split_of

SIZES = SplitSizes(train=40, val=20, test=20)


class QuoteTask(PairTask):
    """Minimal well-formed task; `every` > 0 makes every n-th draw end in a merging context."""

    name = "toy_quote"
    description = "toy"

    def __init__(self, candidates=('")', "')"), every: int = 0, distinct: int = 10**9):
        self.candidates, self.every, self.distinct = candidates, every, distinct
        self.draws = 0

    def draw(self, rng: random.Random):
        self.draws += 1
        word = f"w{rng.randrange(self.distinct)}"
        # A context ending in ` o` + the candidate `s` merges into the single token ` os`, so
        # the choice would not be made where the context ends.
        if self.every and self.draws % self.every == 0:
            return pair((f"{word} = o", f"{word} += o"), ("s", "x"))
        return pair((f'print("{word}', f"print('{word}"), self.candidates)


def test_too_poor_templates_raise_instead_of_returning_short_splits():
    with pytest.raises(TaskError, match="could only produce .* too poor"):
        QuoteTask(distinct=5).splits(SIZES)


def test_candidates_that_are_not_single_tokens_are_listed(tokenizer):
    task = QuoteTask(candidates=(" enumerate", "')"))
    with pytest.raises(TaskError, match="cannot be expressed.*' enumerate'") as err:
        task.splits(SIZES, tokenizer=tokenizer)
    assert '"\')"' not in str(err.value)  # only the offending one is listed


def test_a_task_failing_the_boundary_check_is_an_error_showing_one_failure(tokenizer):
    with pytest.raises(TaskError, match=r"of \d+ examples fail the tokenizer boundary check.*'s'"):
        QuoteTask(every=1).splits(SIZES, tokenizer=tokenizer)


def test_a_small_share_of_boundary_failures_is_dropped_and_counted(tokenizer):
    splits = QuoteTask(every=20).splits(SIZES, tokenizer=tokenizer)
    assert splits.meta["dropped"] > 0
    assert splits.meta["dropped"] <= 0.1 * splits.meta["checked"]
    assert all(ex.context.startswith("print(") for ex in splits.train + splits.val + splits.test)
    assert len(splits.train) == SIZES.train


def test_a_real_task_in_a_too_small_tokenizer_names_its_candidates(small_tokenizer):
    with pytest.raises(TaskError, match="single_double_quote cannot be expressed.*'\"\\)'"):
        get_task("single_double_quote").splits(SIZES, tokenizer=small_tokenizer)


def test_split_assignment_depends_only_on_the_contexts():
    assert split_of(["a", "b"]) == split_of(["a", "b"])
    counts = {s: 0 for s in ("train", "val", "test")}
    for i in range(4000):
        counts[split_of([f"context {i}"])] += 1
    assert counts["train"] == pytest.approx(2000, abs=150)
    assert counts["val"] == pytest.approx(1000, abs=120)
    assert counts["test"] == pytest.approx(1000, abs=120)


def test_negative_split_size_is_refused():
    with pytest.raises(TaskError, match="split size"):
        SplitSizes(train=-1)
