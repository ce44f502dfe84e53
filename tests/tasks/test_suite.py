"""Every built-in task: names, tokenization, splits, and the scripted-model sanity checks."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import EOT
from sparsecircuits.tasks import PAPER_TASKS, SplitSizes, all_tasks, get_task
from sparsecircuits.tasks.base import SPLITS, Task
from sparsecircuits.tasks.encoding import TaskBatch, encode_examples
from sparsecircuits.tasks.evaluate import evaluate_batch

from .conftest import ALL_TASK_NAMES, TEST_SIZES


def oracle_model(task: Task, tok: Tokenizer):
    """A logits_fn that knows the task's rule: it reads each context (the tokens before the
    EOT padding) and puts a high logit on the oracle's token at the last position."""
    pad, vocab = tok.token_to_id(EOT), tok.get_vocab_size()

    def logits_fn(tokens: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*tokens.shape, vocab)
        for i, row in enumerate(tokens.tolist()):
            n = row.index(pad) if pad in row else len(row)
            answer = task.oracle(tok.decode(row[:n]))
            logits[i, n - 1, tok.token_to_id(tok.encode(answer).tokens[0])] = 20.0
        return logits

    return logits_fn


def constant_model(vocab: int, prefer_low_ids: bool):
    """Ignores the input: all-zero logits, or one fixed ranking of the whole vocabulary."""
    row = -torch.arange(vocab, dtype=torch.float) if prefer_low_ids else torch.zeros(vocab)
    return lambda tokens: row.expand(*tokens.shape, vocab)


def test_the_twenty_paper_tasks_and_two_adversarial_variants_are_registered():
    builtin = {t.name for t in all_tasks() if t.source == "builtin"}
    adversarial = {t.name for t in all_tasks() if t.source == "adversarial"}
    assert builtin == set(PAPER_TASKS) and len(PAPER_TASKS) == 20
    assert adversarial == {"bracket_counting_distractor", "bracket_counting_long"}
    assert all(t.description and "\n" not in t.description for t in all_tasks())


@pytest.mark.parametrize("name", ALL_TASK_NAMES)
def test_examples_tokenize_with_single_token_candidates_at_the_boundary(
    name, checked_splits, tokenizer
):
    splits = checked_splits[name]
    assert splits.meta["dropped"] == 0
    for ex in splits.train[:32] + splits.val + splits.test:
        assert ex.correct != ex.wrong
        ctx = tokenizer.encode(ex.context).ids
        for cand in (ex.correct, ex.wrong):
            (cand_id,) = tokenizer.encode(cand).ids  # exactly one token
            # Appending the candidate adds exactly that token: the choice is made right here.
            assert tokenizer.encode(ex.context + cand).ids == ctx + [cand_id]
        # ... and it is the token the real continuation of the code starts with.
        full = tokenizer.encode(ex.context + ex.correct + ex.continuation).ids
        assert full[: len(ctx) + 1] == ctx + tokenizer.encode(ex.correct).ids


@pytest.mark.parametrize("name", ALL_TASK_NAMES)
def test_splits_are_disjoint_balanced_deterministic_and_extend_with_size(name, checked_splits):
    task = get_task(name)
    small = task.splits(TEST_SIZES, seed=0)
    assert small == task.splits(TEST_SIZES, seed=0)
    assert small.train == checked_splits[name].train  # nothing was dropped by the check
    contexts = {s: [ex.context for ex in small.get(s)] for s in SPLITS}
    for s in SPLITS:
        assert len(contexts[s]) == TEST_SIZES.get(s) == len(set(contexts[s]))
        labels = [ex.label for ex in small.get(s)]
        assert labels.count(0) == labels.count(1)
    assert not set(contexts["train"]) & set(contexts["val"])
    assert not set(contexts["train"]) & set(contexts["test"])
    assert not set(contexts["val"]) & set(contexts["test"])
    # The default sizes (512/256/256) are reachable, and asking for more only extends a split.
    full = task.splits(seed=0)
    for s in SPLITS:
        assert len(full.get(s)) == SplitSizes().get(s)
        assert full.get(s)[: TEST_SIZES.get(s)] == small.get(s)
    other_seed = task.splits(TEST_SIZES, seed=1)
    assert other_seed.train != small.train


@pytest.mark.parametrize("name", ALL_TASK_NAMES)
def test_oracle_scores_100_percent_and_constant_models_50(name, checked_splits, tokenizer):
    task = get_task(name)
    examples = checked_splits[name].val
    assert all(task.oracle(ex.context) == ex.correct for ex in examples)
    batch: TaskBatch = encode_examples(examples, tokenizer)
    vocab = tokenizer.get_vocab_size()

    oracle = evaluate_batch(oracle_model(task, tokenizer), batch, batch_size=16)
    assert oracle.accuracy == 1.0
    assert oracle.task_loss < 1e-3 and oracle.two_way_loss < 1e-3

    zeros = evaluate_batch(constant_model(vocab, prefer_low_ids=False), batch)
    assert zeros.accuracy == 0.5  # ties count 1/2
    assert zeros.two_way_loss == pytest.approx(math.log(2))
    assert zeros.task_loss == pytest.approx(math.log(vocab))

    ranked = evaluate_batch(constant_model(vocab, prefer_low_ids=True), batch)
    assert ranked.accuracy == 0.5  # whole pairs: one member of each is right
    # Per class it may be all or nothing, but the two classes always add up to one.
    assert sum(ranked.accuracy_by_label) == pytest.approx(1.0)
