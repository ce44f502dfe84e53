"""A trained model gives the same logits and gradients with kernels=sparse as with dense."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Recorder
from tests.kernels.conftest import assert_close


@pytest.fixture(scope="module")
def trained(tiny_run):
    loaded = ckpt.load_checkpoint(tiny_run)
    return loaded.config, loaded.model.state_dict()


def model_with(cfg, state, kernels: str) -> GPT:
    model = GPT(dataclasses.replace(cfg.model, kernels=kernels))
    model.load_state_dict(state)
    return model


def test_trained_weights_are_sparse(trained):
    cfg, state = trained
    w = state["blocks.0.mlp.fc_in.weight"]
    assert 0 < float((w != 0).float().mean()) < 0.5  # the comparison below is about sparsity


def test_logits_and_every_gradient_match(trained):
    cfg, state = trained
    # Few tokens: a pre-AbsTopK value within float rounding of its row's threshold could flip
    # the kept set between the paths; with 2 x 32 tokens such a near-tie is very unlikely.
    torch.manual_seed(0)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 33))
    results = {}
    for kernels in ("dense", "sparse"):
        model = model_with(cfg, state, kernels)
        rec = Recorder(model.locations)
        logits = model(tokens[:, :-1], hooks=rec.hooks)
        F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results[kernels] = (logits.detach(), rec.acts, grads)
    (l_d, a_d, g_d), (l_s, a_s, g_s) = results["dense"], results["sparse"]
    assert_close(l_s, l_d)
    for name in a_d:
        assert_close(a_s[name], a_d[name], rtol=1e-4)
    for name in g_d:
        assert_close(g_s[name], g_d[name], rtol=1e-4)


def test_read_positions_and_no_grad_eval(trained):
    cfg, state = trained
    tokens = torch.randint(0, cfg.model.vocab_size, (4, 10))
    read = torch.tensor([9, 0, 3, 5])
    with torch.no_grad():
        dense = model_with(cfg, state, "dense")(tokens, read_positions=read)
        sparse = model_with(cfg, state, "sparse")(tokens, read_positions=read)
    assert_close(sparse, dense)


def test_the_sparse_path_is_taken(trained):
    cfg, state = trained
    model = model_with(cfg, state, "sparse")
    x = torch.randn(2, cfg.model.d_model)
    assert model.unembed.uses_sparse(x) and model.blocks[0].attn.q_proj.uses_sparse(x)
