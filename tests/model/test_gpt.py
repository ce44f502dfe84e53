import pytest
import torch

from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT, abstopk
from sparsecircuits.model.hooks import Recorder, compose, match_locations, set_nodes

CFG = ModelConfig(vocab_size=300, n_layer=2, d_model=32, d_head=16, n_ctx=16)


def reference_abstopk(x: torch.Tensor, k: int) -> torch.Tensor:
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


def test_abstopk_matches_sort_based_reference():
    x = torch.randn(64, 7, 48)
    for k in (1, 5, 12, 47, 48):
        assert torch.equal(abstopk(x, k), reference_abstopk(x, k))


def test_abstopk_gradient_flows_only_through_kept_features():
    x = torch.randn(4, 16, requires_grad=True)
    abstopk(x, 4).sum().backward()
    assert torch.equal(x.grad != 0, reference_abstopk(x.detach(), 4) != 0)


def test_every_node_location_is_named_and_hookable():
    model = GPT(CFG)
    names = [f"{L}.attn.{s}" for L in range(2) for s in ("act_in", "q", "k", "v", "resid_delta")]
    names += [f"{L}.mlp.{s}" for L in range(2) for s in ("act_in", "post_act", "resid_delta")]
    assert sorted(model.locations) == sorted(names)
    rec = Recorder(model.locations)
    model(torch.randint(0, 300, (3, 10)), hooks=rec.hooks)
    assert set(rec.acts) == set(names)
    for name, act in rec.acts.items():
        assert act.shape == (3, 10, model.location_width[name])
        # AbsTopK at 1/4: at most a quarter of each token's features are nonzero.
        assert int((act != 0).sum(-1).max()) <= model.location_width[name] // 4


def test_hooks_replace_activations_and_change_the_output():
    torch.manual_seed(0)
    model = GPT(CFG)
    tokens = torch.randint(0, 300, (2, 12))
    base = model(tokens)
    loc = "1.mlp.post_act"
    zero_all = {loc: lambda x: torch.zeros_like(x)}
    assert not torch.allclose(model(tokens, hooks=zero_all), base)
    # Setting a node to the value it already has is a no-op.
    rec = Recorder([loc])
    model(tokens, hooks=rec.hooks)
    same = rec.acts[loc][0, -1, 3]
    assert torch.allclose(model(tokens, hooks={loc: lambda x: x}), base)
    rec2 = Recorder([loc])
    model(tokens, hooks=compose(set_nodes({loc: {3: 5.0}}), rec2.hooks))
    assert float(rec2.acts[loc][0, -1, 3]) == 5.0 and float(same) != 5.0


def test_glob_selection_and_unknown_pattern():
    model = GPT(CFG)
    assert match_locations(model.locations, "*.mlp.post_act") == ["0.mlp.post_act", "1.mlp.post_act"]
    with pytest.raises(Exception, match="no node location"):
        match_locations(model.locations, "9.mlp.*")


def test_causal_later_tokens_do_not_change_earlier_logits():
    torch.manual_seed(0)
    model = GPT(CFG)
    tokens = torch.randint(0, 300, (1, 12))
    padded = torch.cat([tokens, torch.randint(0, 300, (1, 4))], dim=1)
    assert torch.allclose(model(tokens), model(padded)[:, :12], atol=1e-5)


@pytest.mark.parametrize("sink", [True, False])
def test_attention_matches_explicit_softmax(sink):
    """The SDPA path equals softmax over [scores, sink logit] written out by hand."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, n_layer=1, d_model=32, d_head=16, n_ctx=16,
                      attention_sink=sink, abstopk_fraction=1.0)
    model = GPT(cfg)
    attn = model.blocks[0].attn
    if sink:
        attn.sink.data = torch.tensor([1.5, -0.5])
    x = torch.randn(2, 9, 32)
    rec = Recorder(["0.attn.q", "0.attn.k", "0.attn.v"])
    got = attn(x, rec.hooks)
    q, k, v = (rec.acts[f"0.attn.{n}"].view(2, 9, 2, 16).transpose(1, 2) for n in "qkv")
    scores = q @ k.transpose(-1, -2) / 4.0
    scores = scores.masked_fill(~torch.ones(9, 9, dtype=torch.bool).tril(), float("-inf"))
    if sink:
        scores = torch.cat([scores, attn.sink.view(1, 2, 1, 1).expand(2, 2, 9, 1)], -1)
    probs = scores.softmax(-1)[..., :9]
    want = attn.out_proj((probs @ v).transpose(1, 2).reshape(2, 9, 32))
    assert torch.allclose(got, want, atol=1e-5)


def test_learned_positions_and_bigram_options():
    cfg = ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_ctx=16, positional="learned",
                      bigram_table=False)
    model = GPT(cfg)
    assert model.pos_embed is not None and model.bigram is None
    assert model(torch.randint(0, 300, (1, 16))).shape == (1, 16, 300)
    with pytest.raises(ValueError):
        model(torch.randint(0, 300, (1, 17)))
