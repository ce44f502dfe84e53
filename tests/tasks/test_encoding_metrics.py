"""Batches for a causal model, and the metrics against their textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparsecircuits.data.tokenizer import EOT
from sparsecircuits.errors import TaskError
from sparsecircuits.tasks import get_task
from sparsecircuits.tasks.base import TaskExample
from sparsecircuits.tasks.encoding import TaskBatch, encode_examples
from sparsecircuits.tasks.evaluate import load_task_batch
from sparsecircuits.tasks.metrics import (
    accuracy,
    last_position_logits,
    task_loss,
    two_way_loss,
)

from .conftest import TEST_SIZES

EXAMPLES = [
    TaskExample('print("hello world', '")', "')", 0),
    TaskExample("x = 1\nprint('a", "')", '")', 1),
]


def test_right_padded_with_eot_and_lengths_point_at_the_last_context_token(tokenizer):
    batch = encode_examples(EXAMPLES, tokenizer)
    ids = [tokenizer.encode(ex.context).ids for ex in EXAMPLES]
    assert batch.lengths.tolist() == [len(i) for i in ids]
    assert batch.tokens.shape == (2, max(len(i) for i in ids))
    for row, i in zip(batch.tokens.tolist(), ids, strict=True):
        assert row[: len(i)] == i
        assert set(row[len(i) :]) <= {tokenizer.token_to_id(EOT)}
    assert batch.correct_id.tolist() == [tokenizer.token_to_id('")'), tokenizer.token_to_id("')")]
    assert batch.wrong_id.tolist() == batch.correct_id.flip(0).tolist()
    assert batch.label.tolist() == [0, 1]
    assert batch.n_truncated == 0


def test_long_contexts_are_cut_on_the_left_and_counted(tokenizer):
    full = tokenizer.encode(EXAMPLES[1].context).ids
    batch = encode_examples(EXAMPLES, tokenizer, n_ctx=3)
    assert batch.tokens.shape[1] == 3
    assert batch.tokens[1].tolist() == full[-3:]  # the end, where the choice is, is kept
    assert batch.n_truncated == 2


def test_candidates_that_are_not_tokens_are_refused_by_name(tokenizer):
    bad = [TaskExample("for i in", " enumerate", " range", 0)]
    with pytest.raises(TaskError, match="' enumerate'"):
        encode_examples(bad, tokenizer)


def test_select_trims_padding_and_keeps_rows(tokenizer):
    batch = encode_examples(EXAMPLES, tokenizer)
    sub = batch.select(slice(0, 1))
    assert sub.tokens.shape == (1, int(batch.lengths[0]))
    assert sub.correct_id.tolist() == batch.correct_id[:1].tolist()


def _batch(correct, wrong) -> TaskBatch:
    n = len(correct)
    return TaskBatch(
        tokens=torch.zeros(n, 1, dtype=torch.long),
        lengths=torch.ones(n, dtype=torch.long),
        correct_id=torch.tensor(correct),
        wrong_id=torch.tensor(wrong),
        label=torch.zeros(n, dtype=torch.long),
    )


def test_last_position_logits_reads_position_length_minus_one():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    out = last_position_logits(logits, torch.tensor([2, 4]))
    assert torch.equal(out, torch.stack([logits[0, 1], logits[1, 3]]))


def test_metrics_match_their_textbook_formulas():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    batch = _batch([0, 1, 2, 3, 4], [6, 5, 0, 1, 2])
    ce = [-math.log(math.exp(logits[i, i]) / logits[i].exp().sum()) for i in range(5)]
    assert task_loss(logits, batch).item() == pytest.approx(sum(ce) / 5, rel=1e-5)
    two = []
    for i in range(5):
        lc, lw = logits[i, batch.correct_id[i]].item(), logits[i, batch.wrong_id[i]].item()
        two.append(-math.log(math.exp(lc) / (math.exp(lc) + math.exp(lw))))
    assert two_way_loss(logits, batch).item() == pytest.approx(sum(two) / 5, rel=1e-5)
    wins = [logits[i, batch.correct_id[i]] > logits[i, batch.wrong_id[i]] for i in range(5)]
    assert accuracy(logits, batch).item() == pytest.approx(sum(map(float, wins)) / 5)
    assert torch.allclose(
        task_loss(logits, batch, "none"),
        F.cross_entropy(logits, batch.correct_id, reduction="none"),
    )


def test_ties_count_half_and_losses_are_differentiable():
    logits = torch.zeros(2, 4, requires_grad=True)
    batch = _batch([0, 1], [1, 0])
    assert accuracy(logits, batch).item() == 0.5
    (task_loss(logits, batch) + two_way_loss(logits, batch)).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert logits.grad[0, 0] < 0  # raising the correct logit lowers both losses


def test_loading_one_split_equals_slicing_the_full_splits(tokenizer):
    task = get_task("set_or_string")
    reference = encode_examples(task.splits(TEST_SIZES, tokenizer=tokenizer).test[:20], tokenizer)
    batch = load_task_batch(task, tokenizer, split="test", n=20)
    assert torch.equal(batch.tokens, reference.tokens)
    assert torch.equal(batch.correct_id, reference.correct_id)
