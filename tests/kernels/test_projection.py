"""The C++ top-k projection keeps exactly the entries the torch reference keeps."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.kernels.projection import project_weight_
from sparsecircuits.train.sparsity import keep_count, sparsity_mask


@pytest.mark.parametrize("shape,axes", [((64, 256), (0, 1)), ((300, 48), (1,)), ((1000,), ()),
                                        ((7, 5), (0, 1))])
@pytest.mark.parametrize("fraction", [0.5, 1 / 16, 1 / 64])
@pytest.mark.parametrize("j", [0, 4])
def test_same_entries_as_the_reference(shape, axes, fraction, j):
    torch.manual_seed(len(shape) * 1000 + j)
    w = torch.randn(shape) * torch.rand(shape).pow(3)  # tie-free, magnitudes of many scales
    k = keep_count(w.numel(), fraction)
    expected = w * sparsity_mask(w, k, axes, j)
    got = w.clone()
    kept = project_weight_(got, k, axes, j)
    assert torch.equal(got, expected)
    assert kept == int((expected != 0).sum())


def test_ties_at_the_threshold_are_taken_in_index_order():
    w = torch.tensor([[1.0, 2.0, 2.0], [2.0, 3.0, 2.0]])
    got = w.clone()
    assert project_weight_(got, 3, (0, 1), 0) == 3
    assert torch.equal(got, w * sparsity_mask(w, 3, (0, 1), 0))
    assert got.tolist() == [[0.0, 2.0, 2.0], [0.0, 3.0, 0.0]]


def test_min_per_node_can_exceed_the_budget_and_bumps_the_version():
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    version = w._version
    kept = project_weight_(w, 20, (0,), 4)  # every row keeps its top 4: 256 > 20
    assert kept == 256 and int((w != 0).sum()) == 256
    assert w._version > version  # SparseLinear's cached index sees the change
