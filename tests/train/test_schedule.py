import math

import pytest

from sparsecircuits.config import OptimConfig, SparsityConfig
from sparsecircuits.train.schedule import learning_rate, weight_fraction


def test_fraction_anneals_linearly_from_dense_to_target():
    cfg = SparsityConfig(weight_fraction=0.1, anneal_fraction=0.5)
    fr = [weight_fraction(s, 100, cfg) for s in range(100)]
    assert fr[0] == pytest.approx(1 - 0.9 / 50)
    assert fr[24] == pytest.approx(1 - 0.9 * 25 / 50)
    assert all(f == 0.1 for f in fr[49:])
    assert all(a >= b for a, b in zip(fr, fr[1:], strict=False))


def test_dense_model_stays_dense():
    cfg = SparsityConfig(weight_fraction=1.0)
    assert {weight_fraction(s, 10, cfg) for s in range(10)} == {1.0}


def test_lr_warms_up_decays_and_scales_with_inverse_sqrt_fraction():
    cfg = OptimConfig(lr=1.0, warmup_fraction=0.1, final_lr_fraction=0.0)
    lrs = [learning_rate(s, 100, 1.0, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[99] < lrs[50] < lrs[10]
    assert learning_rate(50, 100, 0.25, cfg) == pytest.approx(2 * lrs[50])
    assert math.isclose(learning_rate(99, 100, 1.0, cfg), 1.0 * (1 - 89 / 90))
