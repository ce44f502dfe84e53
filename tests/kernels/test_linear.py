"""SparseLinear on its nonzeros equals the dense-masked F.linear: forward and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsecircuits.kernels import SparseLinear, build_index
from tests.kernels.conftest import assert_close

SHAPES = [  # (in, out, density, tokens)
    (128, 512, 1 / 8, 4096),  # the demo's fc_in
    (512, 2048, 1 / 64, 1000),  # d512 fc_in, a partial token tile
    (2048, 512, 1 / 64, 300),  # d512 fc_out
    (1024, 4096, 1 / 256, 257),
    (37, 19, 0.3, 5),  # widths that are no multiple of 16
    (64, 2048, 0.5, 1),  # one token (generation), the unembedding's shape
]


def sparse_layer(in_f: int, out_f: int, density: float, seed: int, bias: bool = True):
    torch.manual_seed(seed)
    layer = SparseLinear(in_f, out_f, bias=bias, kernels="sparse")
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) < density)
        if bias:
            layer.bias.normal_()
    return layer


def grads(layer: SparseLinear, x: torch.Tensor, g: torch.Tensor, sparse: bool):
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = layer(x) if sparse else F.linear(x, layer.weight, layer.bias)
    y.backward(g)
    bias_grad = layer.bias.grad if layer.bias is not None else None
    return y.detach(), x.grad, layer.weight.grad, bias_grad


@pytest.mark.parametrize("in_f,out_f,density,n", SHAPES)
def test_forward_and_gradients_match_dense(in_f, out_f, density, n):
    layer = sparse_layer(in_f, out_f, density, seed=n)
    x, g = torch.randn(n, in_f), torch.randn(n, out_f)
    assert layer.uses_sparse(x)
    sparse = grads(layer, x, g, sparse=True)
    dense = grads(layer, x, g, sparse=False)
    for got, want in zip(sparse, dense, strict=True):
        assert_close(got, want)


def test_support_weight_gradient_is_the_dense_gradient_on_the_support():
    layer = sparse_layer(256, 512, 1 / 32, seed=1)
    layer.weight_grad = "support"
    x, g = torch.randn(700, 256), torch.randn(700, 512)
    _, gx, gw, gb = grads(layer, x, g, sparse=True)
    _, gx_ref, gw_ref, gb_ref = grads(layer, x, g, sparse=False)
    support = layer.weight.detach() != 0
    assert_close(gw[support], gw_ref[support])
    assert not gw[~support].any()
    assert_close(gx, gx_ref)
    assert_close(gb, gb_ref)


def test_batched_input_and_no_bias():
    layer = sparse_layer(48, 80, 0.2, seed=2, bias=False)
    x = torch.randn(3, 7, 48)
    assert_close(layer(x), F.linear(x, layer.weight))


def test_index_follows_in_place_weight_changes():
    layer = sparse_layer(64, 64, 0.1, seed=3)
    x = torch.randn(20, 64)
    layer(x)
    with torch.no_grad():  # an optimiser step or a projection: in place, version bumped
        layer.weight.mul_(torch.rand_like(layer.weight) < 0.5).add_(0.01 * torch.eye(64))
    assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.load_state_dict({"weight": torch.zeros(64, 64), "bias": torch.ones(64)})
    assert_close(layer(x), torch.ones(20, 64))


def test_index_lists_exactly_the_nonzeros():
    w = torch.tensor([[0.0, 2.0, 0.0], [-1.0, 0.0, 3.0]])
    ix = build_index(w)
    assert ix.rowptr.tolist() == [0, 1, 3]
    assert ix.csr_idx.tolist() == [1, 0, 2] and ix.csr_val.tolist() == [2.0, -1.0, 3.0]
    assert ix.colptr.tolist() == [0, 1, 2, 3]
    assert ix.csc_idx.tolist() == [1, 0, 1] and ix.csc_val.tolist() == [-1.0, 2.0, 3.0]


def test_all_zero_weight():
    layer = sparse_layer(32, 16, 0.0, seed=4)
    x = torch.randn(9, 32, requires_grad=True)
    layer(x).sum().backward()
    assert_close(layer(x), layer.bias.detach().expand(9, 16))
    assert not x.grad.any()


def test_selection():
    layer = sparse_layer(512, 2048, 1 / 64, seed=5)
    x = torch.randn(4, 512)
    layer.kernels = "dense"
    assert not layer.uses_sparse(x)
    layer.kernels = "auto"
    assert layer.uses_sparse(x)
    assert not layer.uses_sparse(x.double())  # float32 only: other dtypes take F.linear
    with torch.no_grad():
        layer.weight.fill_(1.0)  # fully dense: auto keeps the GEMM
    assert not layer.uses_sparse(x)
    layer.kernels = "sparse"
    assert layer.uses_sparse(x)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="kernels"):
        SparseLinear(4, 4, kernels="fast")
