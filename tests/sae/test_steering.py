"""Latent interventions: only the chosen latent's decoder direction moves the activation."""

import pytest
import torch
from typer.testing import CliRunner

from sparsecircuits.errors import SAEError
from sparsecircuits.sae.cli import app
from sparsecircuits.sae.sae_file import load_sae
from sparsecircuits.sae.steering import latent_hook


@pytest.fixture(scope="module")
def sae(tiny_sae):
    return load_sae(tiny_sae).sae


def _x():
    return torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0)) * 3


def test_clamp_moves_x_along_the_latent_direction_only(sae):
    x = _x()
    z = sae.encode(x)[..., 7:8]
    out = latent_hook(sae, 7, "clamp", 4.0)(x)
    assert torch.allclose(out - x, (4.0 - z) * sae.W_dec[7].detach(), atol=1e-5)


def test_interventions_that_keep_the_latent_leave_x_unchanged(sae):
    x = _x()
    assert torch.equal(latent_hook(sae, 3, "scale", 1.0)(x), x)


def test_ablate_removes_the_latents_contribution(sae):
    x = _x()
    z = sae.encode(x)[..., 5:6]
    assert torch.allclose(latent_hook(sae, 5, "ablate")(x), x - z * sae.W_dec[5].detach())


def test_bad_latent_requests_are_user_errors(sae):
    with pytest.raises(SAEError, match="latent 128 is not in 0..127"):
        latent_hook(sae, 128, "clamp", 1.0)
    with pytest.raises(SAEError, match="needs a finite value"):
        latent_hook(sae, 1, "scale", float("nan"))


def test_steer_command_prints_both_generations(tiny_sae, tiny_run):
    r = CliRunner().invoke(app, ["steer", str(tiny_sae), "--latent", "3", "--clamp", "50",
                                 "--prompt", "def f(x):", "--tokens", "6",
                                 "--checkpoint", str(tiny_run)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "--- without intervention ---" in r.output
    assert "--- with latent 3 of 1.resid_mid clamped to 50.0 ---" in r.output
