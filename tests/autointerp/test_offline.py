"""The offline explainer on synthetic activations: it recovers the predicate planted in them."""

import numpy as np
import torch

from sparsecircuits.autointerp.offline import explain_block
from sparsecircuits.autointerp.scoring import balanced_accuracy, correlation, orient

NAMES = ["string:single", "bracket:(", "after:import", "line:start", "tok:x", "class:name"]


def _matrix(n: int = 4000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([0.2, 0.3, 0.05, 0.1, 0.15, 0.4])
    return rng.random((n, len(NAMES))) < rates  # [n, P] independent predicates


def _noise(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 0.1, n)).float()


def test_recovers_a_single_planted_predicate():
    m = _matrix()
    acts = torch.from_numpy(m[:, 2].astype(np.float32)) + _noise(len(m), 1)
    (found,) = explain_block(NAMES, m, acts[:, None], min_count=20)
    assert found.predicates == ("after:import",)
    assert found.explain_correlation > 0.9


def test_recovers_a_planted_conjunction():
    m = _matrix()
    planted = m[:, 0] & m[:, 1]  # fires inside a single-quoted string inside parentheses
    acts = torch.from_numpy(planted.astype(np.float32)) + _noise(len(m), 2)
    (found,) = explain_block(NAMES, m, acts[:, None], min_count=20)
    assert set(found.predicates) == {"string:single", "bracket:("}
    assert "inside a single-quoted string" in found.text(1.0)


def test_names_where_the_activation_is_strongest():
    m = _matrix()
    acts = m[:, 0] * (1.0 + 4.0 * m[:, 3])  # a string unit, much stronger at line starts
    acts = torch.from_numpy(acts.astype(np.float32)) + _noise(len(m), 3)
    (found,) = explain_block(NAMES, m, acts[:, None], min_count=20)
    assert "string:single" in found.predicates
    assert "strongest at the start of a line" in found.text(1.0) or found.predicates == (
        "string:single", "line:start")


def test_a_constant_unit_has_no_explanation_and_units_are_independent():
    m = _matrix()
    acts = torch.stack([torch.zeros(len(m)), torch.from_numpy(m[:, 4].astype(np.float32))], 1)
    dead, alive = explain_block(NAMES, m, acts, min_count=20)
    assert dead is None and alive.predicates == ("tok:x",)


def test_orientation_explains_the_larger_tail():
    acts = torch.zeros(1000, 2)
    acts[:10, 0] = 5.0  # fires positively
    acts[:10, 1] = -5.0  # fires negatively
    pos, neg = orient(acts)
    assert pos.sign == 1.0 and neg.sign == -1.0
    assert 0 < pos.threshold < 5.0 and 0 < neg.threshold < 5.0


def test_balanced_accuracy_and_correlation_match_their_formulas():
    said_pos, said_neg = np.array([1, 1, 1, 0]), np.array([0, 0, 1, 0, 0])
    assert balanced_accuracy(said_pos, said_neg) == (0.75 + 0.8) / 2
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert abs(correlation(x, 2 * x + 1) - 1.0) < 1e-12
    assert correlation(x, torch.ones(4)) is None
