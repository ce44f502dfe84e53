"""The TopK SAE's math against plain reference implementations."""

import torch

from sparsecircuits.sae.model import TopKSAE, batch_topk_relu, geometric_median, topk_relu
from sparsecircuits.sae.trainer import auxk_loss


def _sae(d_in=6, d_sae=20, k=3, batch_topk=False, seed=0):
    sae = TopKSAE(d_in, d_sae, k, batch_topk)
    sae.initialize(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(seed + 1))
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 2))
    return sae


def test_topk_relu_keeps_the_k_largest_and_drops_negatives():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5, 1.0], [-3.0, -1.0, -2.0, 0.5, -0.1]])
    assert torch.equal(topk_relu(pre, 2), torch.tensor([[3.0, 0, 2.0, 0, 0], [0, 0, 0, 0.5, 0]]))


def test_batch_topk_keeps_k_per_row_on_average_over_the_batch():
    pre = torch.tensor([[5.0, 4.0, 3.0], [0.1, 0.2, -1.0]])
    # k=1 per row -> the 2 largest of the whole batch, both in row 0.
    assert torch.equal(batch_topk_relu(pre, 1), torch.tensor([[5.0, 4.0, 0], [0, 0, 0]]))


def test_encode_decode_follow_the_docstring_formula():
    sae = _sae()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    ref_z = torch.zeros_like(pre)
    for i, row in enumerate(pre):
        top = row.argsort(descending=True)[:3]
        ref_z[i, top] = row[top].clamp_min(0)
    assert torch.allclose(sae.encode(x), ref_z)
    assert torch.allclose(sae(x), ref_z @ sae.W_dec + sae.b_dec)
    assert int((sae.encode(x) != 0).sum(-1).max()) <= 3


def test_initialisation_gives_unit_decoder_rows_and_a_tied_encoder():
    sae = _sae()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(20))
    assert torch.equal(sae.W_enc, sae.W_dec.T)


def test_parallel_gradient_removal_and_renormalisation_keep_rows_unit():
    sae = _sae()
    sae.W_dec.grad = torch.randn(20, 6, generator=torch.Generator().manual_seed(4))
    sae.remove_parallel_grad()
    # What is left of each row's gradient is orthogonal to the row.
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() < 1e-6
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(20))


def test_batch_topk_sae_infers_with_its_threshold():
    sae = _sae(batch_topk=True)
    sae.threshold.fill_(0.5)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(5))
    pre = sae.pre_acts(x)
    assert torch.equal(sae.encode(x), torch.where(pre > 0.5, pre, torch.zeros_like(pre)))


def test_geometric_median_of_points_on_a_line_is_the_middle_one():
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [10.0, 10.0], [50.0, 50.0]])
    assert torch.allclose(geometric_median(pts), torch.tensor([2.0, 2.0]), atol=1e-3)


def test_geometric_median_minimises_the_summed_distance():
    pts = torch.randn(200, 4, generator=torch.Generator().manual_seed(6)) ** 3
    med = geometric_median(pts)
    cost = (pts - med).norm(dim=-1).sum()
    for delta in torch.eye(4) * 1e-2:
        assert cost <= (pts - med - delta).norm(dim=-1).sum()
        assert cost <= (pts - med + delta).norm(dim=-1).sum()


def test_auxk_loss_uses_only_dead_latents():
    sae = _sae()
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(7))
    pre = sae.pre_acts(x)
    err = torch.randn(8, 6, generator=torch.Generator().manual_seed(8))
    dead = torch.zeros(20, dtype=torch.bool)
    total = torch.tensor(10.0)
    assert float(auxk_loss(sae, pre, err, dead, 3, total)) == 0.0
    dead[[2, 5, 7, 11]] = True
    loss = auxk_loss(sae, pre, err, dead, 3, total)
    loss.backward()
    live_columns = sae.W_enc.grad[:, ~dead]
    assert torch.equal(live_columns, torch.zeros_like(live_columns))
    assert sae.W_enc.grad[:, dead].abs().sum() > 0
    # The formula: top-3 dead latents reconstruct the error, normalised by total variance.
    z = topk_relu(pre.detach().masked_fill(~dead, float("-inf")), 3)
    assert torch.allclose(loss, (err - z @ sae.W_dec.detach()).pow(2).sum() / total)
