"""The C++ AbsTopK keeps the same set as the torch reference, and passes the same gradient."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.kernels import abstopk, abstopk_reference


@pytest.mark.parametrize("d,k", [(128, 32), (512, 128), (2048, 512), (100, 1), (100, 99), (7, 3)])
def test_same_kept_set_without_ties(d, k):
    torch.manual_seed(d + k)
    x = torch.randn(333, d) * torch.logspace(-3, 3, 333).unsqueeze(1)  # many exponents
    fast, ref = abstopk(x, k, fast=True), abstopk_reference(x, k)
    assert torch.equal(fast, ref)
    assert ((fast != 0).sum(-1) == k).all()


def test_ties_keep_every_entry_at_the_threshold():
    # Both paths keep every |x| >= the k-th largest |x|: a tie at the threshold keeps all of it.
    x = torch.tensor([[3.0, -2.0, 2.0, 1.0, -2.0, 0.5],
                      [0.0, 0.0, 0.0, 0.0, 1.0, -0.0],
                      [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]])
    fast, ref = abstopk(x, 2, fast=True), abstopk_reference(x, 2)
    assert torch.equal(fast, ref)
    assert fast[0].tolist() == [3.0, -2.0, 2.0, 0.0, -2.0, 0.0]
    assert fast[2].tolist() == x[2].tolist()


def test_gradient_is_the_kept_mask_even_where_a_kept_entry_is_zero():
    x = torch.tensor([[0.0, 0.0, 5.0, 0.0], [1.0, -4.0, 2.0, 3.0]], requires_grad=True)
    g = torch.arange(8.0).view(2, 4)
    abstopk(x, 2, fast=True).backward(g)
    fast_grad = x.grad.clone()
    x.grad = None
    abstopk_reference(x, 2).backward(g)
    assert torch.equal(fast_grad, x.grad)


def test_batched_shape_and_noop_when_k_covers_the_row():
    x = torch.randn(2, 5, 64)
    assert torch.equal(abstopk(x, 16, fast=True), abstopk_reference(x, 16))
    assert abstopk(x, 64, fast=True) is x


@pytest.mark.parametrize("d,k", [(128, 32), (512, 128), (33, 16), (100, 1)])
def test_same_kept_set_with_many_ties(d, k):
    # Few distinct magnitudes: the search for the k-th largest meets ties at every step.
    torch.manual_seed(d)
    x = torch.randint(-3, 4, (500, d)).float() * 0.37
    x[::5] = torch.randn(100, d) * 1e-30  # tiny magnitudes, far below the others' exponents
    x[1::7] = 0.0  # all-zero rows keep everything, as the reference does
    assert torch.equal(abstopk(x, k, fast=True), abstopk_reference(x, k))
