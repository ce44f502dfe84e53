"""SAEBench core metrics against their textbook formulas, and on SAEs with known answers."""

import math

import pytest
import torch

from sparsecircuits.sae.evaluate import evaluate_sae, val_windows
from sparsecircuits.sae.metrics import (
    ReconstructionSums,
    SplicingSums,
    ce_loss_recovered,
    kl_score,
)
from sparsecircuits.sae.model import TopKSAE
from sparsecircuits.sae.sae_file import SAEHandle


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_reconstruction_metrics_match_the_textbook_formulas():
    x = torch.randn(30, 5, generator=_gen(0)) + torch.tensor([4.0, -2.0, 0.0, 1.0, 3.0])
    x_hat = x + 0.3 * torch.randn(30, 5, generator=_gen(1))
    z = torch.relu(torch.randn(30, 12, generator=_gen(2)) - 0.5)
    z[:, 3] = 0  # a dead latent
    z[:, 4] = 1.0  # a dense one
    sums = ReconstructionSums(5, 12)
    for part in (slice(0, 7), slice(7, 30)):  # batching must not matter
        sums.add(x[part], x_hat[part], z[part])
    m = sums.metrics()
    xd, xh = x.double(), x_hat.double()
    err = (xd - xh).pow(2).sum()
    assert m["tokens"] == 30
    assert m["explained_variance"] == pytest.approx(
        float(1 - err / (xd - xd.mean(0)).pow(2).sum()), rel=1e-12)
    assert m["mse"] == pytest.approx(float(((xd - xh) ** 2).mean()), rel=1e-12)
    cos = (xd * xh).sum(-1) / (xd.norm(dim=-1) * xh.norm(dim=-1))
    assert m["cosine_similarity"] == pytest.approx(float(cos.mean()), rel=1e-12)
    assert m["l0"] == pytest.approx(float((z != 0).sum(-1).double().mean()))
    assert m["dead_latents"] == int(((z != 0).sum(0) == 0).sum()) >= 1
    assert m["dense_latents"] == int(((z != 0).double().mean(0) > 0.1).sum()) >= 1
    # Around zero (SAEBench 0.6, SAELens <= 6.18) it would be a different, larger number.
    around_zero = float(1 - err / xd.pow(2).sum())
    assert around_zero > m["explained_variance"] + 0.05


def test_splicing_metrics_match_the_textbook_formulas():
    targets = torch.randint(0, 7, (3, 4), generator=_gen(3))
    clean, sae, zero = (torch.randn(3, 4, 7, generator=_gen(s)) for s in (4, 5, 6))
    sums = SplicingSums()
    sums.add(targets, clean, sae, zero)
    m = sums.metrics()

    def ce(logits):
        logp = logits.double().log_softmax(-1)
        return float(-logp.gather(-1, targets[..., None]).mean())

    def kl(new):
        p = clean.double().softmax(-1)
        return float((p * (p.log() - new.double().log_softmax(-1))).sum(-1).mean())

    assert m["ce_loss_clean"] == pytest.approx(ce(clean), rel=1e-12)
    assert m["ce_loss_with_sae"] == pytest.approx(ce(sae), rel=1e-12)
    assert m["ce_loss_with_ablation"] == pytest.approx(ce(zero), rel=1e-12)
    assert m["ce_loss_recovered"] == pytest.approx((ce(zero) - ce(sae)) / (ce(zero) - ce(clean)))
    assert m["kl_div_with_sae"] == pytest.approx(kl(sae), rel=1e-12)
    assert m["kl_score"] == pytest.approx((kl(zero) - kl(sae)) / kl(zero))


def test_recovered_scores_are_1_for_clean_and_0_for_ablated():
    assert ce_loss_recovered(2.0, 2.0, 5.0) == 1.0
    assert ce_loss_recovered(2.0, 5.0, 5.0) == 0.0
    assert kl_score(0.0, 3.0) == 1.0 and kl_score(3.0, 3.0) == 0.0
    assert math.isnan(ce_loss_recovered(2.0, 2.0, 2.0))  # undefined, not a division error


def _identity_sae(d: int) -> TopKSAE:
    """z = [ReLU(x), ReLU(-x)], x_hat = ReLU(x) - ReLU(-x) = x exactly (k = d of 2d latents)."""
    sae = TopKSAE(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def _zero_sae(d: int) -> TopKSAE:
    sae = TopKSAE(d, 2 * d, 1)
    for p in sae.parameters():
        torch.nn.init.zeros_(p)
    return sae.eval()


def _handle(sae, location):
    return SAEHandle(sae, {"architecture": "topk", "location": location}, None)


def test_an_identity_sae_explains_everything_and_recovers_all_ce(tiny_loaded):
    windows = val_windows(tiny_loaded, 4)
    doc, density = evaluate_sae(tiny_loaded, _handle(_identity_sae(32), "1.resid_mid"), windows)
    m = doc["metrics"]
    assert m["explained_variance"] == 1.0 and m["mse"] == 0.0
    assert m["ce_loss_with_sae"] == m["ce_loss_clean"]
    assert m["ce_loss_recovered"] == 1.0 and m["kl_score"] == 1.0 and m["kl_div_with_sae"] == 0.0
    assert m["cosine_similarity"] == pytest.approx(1.0, abs=1e-9)
    assert m["tokens"] == 4 * tiny_loaded.config.model.n_ctx and m["l0"] <= 32
    assert density.shape == (64,)


def test_a_zero_sae_gives_the_zero_ablation_numbers(tiny_loaded):
    windows = val_windows(tiny_loaded, 4)
    doc, density = evaluate_sae(tiny_loaded, _handle(_zero_sae(32), "0.resid_post"), windows)
    m = doc["metrics"]
    assert m["ce_loss_with_sae"] == m["ce_loss_with_ablation"] > m["ce_loss_clean"]
    assert m["ce_loss_recovered"] == 0.0 and m["kl_score"] == 0.0
    assert m["kl_div_with_sae"] == m["kl_div_with_ablation"] > 0
    assert m["l0"] == 0.0 and m["dead_latents"] == 64 and m["dense_latents"] == 0
    assert m["explained_variance"] < 0  # predicting 0 is worse than predicting the mean
    assert bool((density == 0).all())
