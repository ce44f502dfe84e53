"""The residual stream's hook points: named, recorded and patched like node locations."""

import pytest
import torch

from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Recorder

CFG = ModelConfig(vocab_size=300, n_layer=3, d_model=32, d_head=16, n_ctx=16)
RESID = [f"{L}.resid_{p}" for L in range(3) for p in ("pre", "mid", "post")] + ["final_resid"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    with torch.no_grad():  # zero at init: make the bigram and bias paths visible
        model.bigram.normal_()
        model.logits_bias.normal_()
    return model


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))


def _record(model, tokens, names):
    rec = Recorder(names)
    logits = model(tokens, hooks=rec.hooks)
    return rec.acts, logits


def test_hook_points_list_residual_points_and_node_locations_in_forward_order(model):
    points = model.hook_points
    assert set(points) == set(RESID) | set(model.locations)
    assert len(points) == len(set(points))
    assert points[0] == "0.resid_pre" and points[-1] == "final_resid"
    assert points.index("0.attn.resid_delta") < points.index("0.resid_mid")
    assert points.index("0.resid_mid") < points.index("0.mlp.act_in")
    assert points.index("0.mlp.resid_delta") < points.index("0.resid_post")
    assert points.index("0.resid_post") < points.index("1.resid_pre")
    # Node locations (the units of a circuit) stay what they were: no residual point among them.
    assert not set(RESID) & set(model.locations)
    assert all(model.hook_point_width[p] == CFG.d_model for p in RESID)
    assert model.hook_point_width["0.mlp.post_act"] == model.location_width["0.mlp.post_act"]


def test_recorded_residual_stream_matches_the_blocks(model, tokens):
    acts, logits = _record(model, tokens, model.hook_points)
    assert torch.equal(acts["0.resid_pre"], model.embed_tokens(tokens))
    for L in range(CFG.n_layer):
        mid = acts[f"{L}.resid_pre"] + acts[f"{L}.attn.resid_delta"]
        post = acts[f"{L}.resid_mid"] + acts[f"{L}.mlp.resid_delta"]
        assert torch.equal(acts[f"{L}.resid_mid"], mid)
        assert torch.equal(acts[f"{L}.resid_post"], post)
        if L + 1 < CFG.n_layer:
            assert torch.equal(acts[f"{L}.resid_post"], acts[f"{L + 1}.resid_pre"])
    assert torch.equal(acts[f"{CFG.n_layer - 1}.resid_post"], acts["final_resid"])
    assert torch.equal(acts["final_resid"], model.residual_stream(tokens)[-1])
    # The logits are read from final_resid and nothing else of the stream.
    bigram = torch.nn.functional.embedding(tokens, model.bigram)
    expected = model.unembed(model.final_norm(acts["final_resid"])) + model.logits_bias + bigram
    assert torch.allclose(logits, expected, atol=1e-6)


def test_identity_hooks_on_the_residual_stream_change_nothing(model, tokens):
    base = model(tokens)
    assert torch.equal(model(tokens, hooks={p: (lambda x: x) for p in RESID}), base)


def test_patching_the_residual_stream_replaces_everything_upstream(model, tokens):
    """Patching 1.resid_pre with another input's stream gives that input's output."""
    other = torch.randint(0, 300, tokens.shape, generator=torch.Generator().manual_seed(2))
    acts, other_logits = _record(model, other, ["1.resid_pre"])
    patched = model(tokens, hooks={"1.resid_pre": lambda x: acts["1.resid_pre"]})
    # No bigram/positional path from the tokens to the logits besides the bigram table.
    bigram_diff = torch.nn.functional.embedding(tokens, model.bigram) - torch.nn.functional.embedding(
        other, model.bigram
    )
    assert torch.allclose(patched, other_logits + bigram_diff, atol=1e-5)
    assert not torch.allclose(patched, model(tokens), atol=1e-3)


def test_zeroing_final_resid_leaves_only_the_biases(model, tokens):
    logits = model(tokens, hooks={"final_resid": torch.zeros_like})
    bigram = torch.nn.functional.embedding(tokens, model.bigram)
    assert torch.allclose(logits, model.logits_bias + bigram, atol=1e-6)


def test_read_positions_sees_the_patched_final_resid(model, tokens):
    read = torch.tensor([3, 11])
    hooks = {"final_resid": lambda x: x * 2.0}
    full = model(tokens, hooks=hooks)
    assert torch.allclose(model(tokens, hooks=hooks, read_positions=read),
                          full[torch.arange(2), read], atol=1e-6)  # fmt: skip
