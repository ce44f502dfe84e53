import torch

from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.roles import MATRIX
from sparsecircuits.train.sparsity import (
    SparseParam,
    keep_count,
    nonzeros,
    project_,
    protected_mask,
    sparse_parameters,
    topk_mask,
)


def test_topk_mask_keeps_exactly_k_largest_even_with_ties():
    mag = torch.tensor([0.0, 3.0, 1.0, 1.0, 1.0, 2.0, 0.0])
    mask = topk_mask(mag, 4)
    assert int(mask.sum()) == 4
    assert mask[1] and mask[5]  # the two largest
    assert int(mask[[2, 3, 4]].sum()) == 2  # two of the three tied ones


def test_topk_mask_matches_sort_reference():
    torch.manual_seed(0)
    mag = torch.randn(10_000).abs()
    for k in (1, 17, 5000, 9999):
        ref = torch.zeros_like(mag, dtype=torch.bool)
        ref[mag.argsort(descending=True)[:k]] = True
        assert torch.equal(topk_mask(mag, k), ref)


def test_every_matrix_keeps_the_same_fraction_and_exactly_its_target():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_layer=2, d_model=64, n_ctx=16))
    params = sparse_parameters(model)
    stats = project_(params, 0.1, j=0)
    counts = nonzeros(params)
    for sp in params:
        target = keep_count(sp.param.numel(), 0.1)
        if sp.name.endswith("bias"):
            # biases start at zero: they can only hold fewer nonzeros than the target
            assert counts[sp.name] <= target
        else:
            assert counts[sp.name] == target, sp.name
    assert stats.over_target == {}
    assert "bigram" not in counts and not any("norm" in n for n in counts)


def test_kept_entries_are_the_largest_by_magnitude():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_ctx=16))
    w = model.blocks[0].mlp.fc_in.weight
    before = w.detach().clone()
    project_(sparse_parameters(model), 0.05, j=0)
    kept = before.abs()[w != 0]
    dropped = before.abs()[w == 0]
    assert kept.min() >= dropped.max()
    assert torch.equal(w[w != 0], before[w != 0])  # survivors are not rescaled


def test_min_j_protects_every_neuron_and_channel():
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    w[5] *= 1e-3  # a neuron whose weights would all lose the global ranking
    w[:, 7] *= 1e-3  # and an input channel likewise
    model = torch.nn.Linear(32, 64)
    model.weight.data = w
    params = [SparseParam("weight", model.weight, MATRIX.node_axes)]
    project_(params, 0.05, j=4)
    assert int((model.weight[5] != 0).sum()) >= 4
    assert int((model.weight[:, 7] != 0).sum()) >= 4


def test_min_j_excess_is_reported_when_budget_is_too_small():
    model = torch.nn.Linear(32, 64, bias=False)
    params = [SparseParam("weight", model.weight, MATRIX.node_axes)]
    stats = project_(params, 0.01, j=4)  # 20 allowed, but 64 rows x 4 must stay
    assert stats.over_target["weight"] == int((model.weight != 0).sum()) - keep_count(2048, 0.01)
    assert (model.weight != 0).sum(1).min() >= 4


def test_protected_mask_along_embedding_channels_only():
    mag = torch.rand(100, 8)
    prot = protected_mask(mag, (1,), 3)
    assert torch.equal(prot.sum(0), torch.full((8,), 3))
