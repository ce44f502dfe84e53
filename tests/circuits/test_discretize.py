import math

import pytest
import torch

from sparsecircuits.circuits.discretize import (
    calibrate_logits,
    fit_calibration,
    search_k,
)
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.tasks.metrics import accuracy, task_loss


def _loss_curve(n: int, knee: int):
    """A decreasing loss that crosses 0.15 between knee - 1 and knee."""
    return lambda k: 0.15 * math.exp((knee - k) / 7.0) + (1e-3 if k >= knee else 0.0)


@pytest.mark.parametrize("knee", [1, 2, 37, 500, 1000])
@pytest.mark.parametrize("start", [1, 13, 600, 5000])
def test_search_finds_the_smallest_k_reaching_the_target(knee, start):
    n = 1000
    loss = _loss_curve(n, knee)
    brute = next(k for k in range(n + 1) if loss(k) <= 0.15 + 1e-3)
    got = search_k(lambda k: loss(k) - 1e-3, n, 0.15, start)
    assert got.reached and got.k == brute
    assert got.loss <= 0.15
    assert len(got.evaluations) <= 2 * math.ceil(math.log2(n)) + 2


def test_search_reports_the_best_k_when_the_target_is_out_of_reach():
    got = search_k(lambda k: 1.0 + (k - 300) ** 2 / 1e5, 1000, 0.15, start=10)
    assert not got.reached and got.k is None
    assert got.best_loss == min(got.evaluations.values())
    assert got.best_k in got.evaluations


def test_search_returns_zero_when_nothing_is_needed():
    assert search_k(lambda k: 0.01, 50, 0.15, start=20).k == 0


def _batch(n: int = 64, vocab: int = 30):
    gen = torch.Generator().manual_seed(0)
    correct = torch.randint(0, vocab // 2, (n,), generator=gen)
    wrong = correct + vocab // 2
    return TaskBatch(
        torch.zeros(n, 1, dtype=torch.long),
        torch.ones(n, dtype=torch.long),
        correct,
        wrong,
        torch.zeros(n, dtype=torch.long),
    )


def test_calibration_lowers_the_loss_and_never_changes_the_choice():
    b = _batch()
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 30, generator=gen) * 0.3
    logits[torch.arange(64), b.correct_id] += 0.5  # under-confident, mostly right
    scale, shift = fit_calibration(logits, b, steps=16)
    cal = calibrate_logits(logits, b, scale, shift)
    assert float(task_loss(cal, b)) < float(task_loss(logits, b)) - 0.5
    assert scale > 1 and shift > 0
    assert float(accuracy(cal, b)) == float(accuracy(logits, b))


def test_calibration_shift_touches_only_the_two_candidates():
    b = _batch(4)
    logits = torch.zeros(4, 30)
    cal = calibrate_logits(logits, b, 2.0, 1.5)
    bumped = (cal != 0).nonzero()[:, 1].view(4, 2).sort(1).values
    want = torch.stack([b.correct_id, b.wrong_id], 1).sort(1).values
    assert torch.equal(bumped, want)


def test_zero_calibration_steps_is_the_identity():
    b = _batch()
    assert fit_calibration(torch.randn(64, 30), b, steps=0) == (1.0, 0.0)
