"""Import their format, compare logits with the hand-written forward, round-trip bit-exactly."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer

from sparsecircuits.checkpoint import load_checkpoint, write_checkpoint
from sparsecircuits.config import ModelConfig, RunConfig
from sparsecircuits.data.tokenizer import train_tokenizer
from sparsecircuits.model.gpt import GPT
from sparsecircuits.openai_format.config_map import RMSNORM_EPS
from sparsecircuits.openai_format.convert import export_openai, import_openai
from sparsecircuits.openai_format.errors import OpenAIFormatError
from tests.openai_format import reference as ref
from tests.openai_format.conftest import corpus_texts

VARIANTS = {
    "released-like": {},
    "bias-tied-relu": {"bias": True, "tied_unembed": True, "activation_type": "relu"},
    "no-sink-no-bigram-dense-act": {"sink": False, "enable_bigram_table": False, "afrac": None},
    "default-loctypes": {"afrac_loctypes": "attn_in,attn_out,mlp_in,mlp_out"},
    "floor-not-round": {"afrac": 0.3},  # int(0.3 x 32) = 9 where round() would keep 10
    "n_mlp-alias": {"d_mlp": 96},  # written as n_mlp, the older spelling their loader renames
}


def _tokens(vocab: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (3, 16), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_logits_match_their_forward(make_model_dir, tmp_path, variant):
    model_dir, cfg, sd = make_model_dir(**VARIANTS[variant])
    if variant == "n_mlp-alias":
        doc = dict(cfg)
        doc["n_mlp"] = doc.pop("d_mlp")
        (model_dir / "beeg_config.json").write_text(json.dumps(doc))
    import_openai(model_dir, tmp_path / "ours")
    loaded = load_checkpoint(tmp_path / "ours")
    idx = _tokens(cfg["vocab_size"])
    with torch.no_grad():
        ours, theirs = loaded.model(idx), ref.forward(sd, cfg, idx)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()


def test_their_edge_cases_import(make_model_dir, tmp_path):
    """A zero wpe means no positions; a missing final_logits_bias is zeros; their non-flash
    causal-mask buffer is not a weight."""
    model_dir, cfg, sd = make_model_dir()
    sd["transformer.wpe.weight"] = torch.zeros_like(sd["transformer.wpe.weight"])
    del sd["final_logits_bias"]
    for i in range(cfg["n_layer"]):
        sd[f"transformer.h.{i}.attn.bias"] = torch.ones(16, 16).tril().view(1, 1, 16, 16)
    torch.save(sd, model_dir / "final_model.pt")
    import_openai(model_dir, tmp_path / "ours")
    loaded = load_checkpoint(tmp_path / "ours")
    assert loaded.config.model.positional == "none"
    idx = _tokens(cfg["vocab_size"])
    with torch.no_grad():
        assert torch.allclose(loaded.model(idx), ref.forward(sd, cfg, idx), atol=1e-5, rtol=0)


def test_node_names_hold_their_activations(make_model_dir, tmp_path):
    """Our `L.attn.q` (all heads, after the joint AbsTopK) is their hook `L.attn.q`."""
    model_dir, cfg, sd = make_model_dir()
    import_openai(model_dir, tmp_path / "ours")
    model = load_checkpoint(tmp_path / "ours").model
    seen = {}

    def record(name):
        def hook(x):
            seen[name] = x
            return x
        return hook

    idx = _tokens(cfg["vocab_size"])
    names = ["0.attn.act_in", "0.attn.q", "0.attn.k", "0.attn.v"]
    with torch.no_grad():
        model(idx, hooks={n: record(n) for n in names})
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:16]
    h = ref._keep_topk(ref._rms(x, sd["transformer.h.0.ln_1.weight"]), cfg, "attn_in")
    q, k, v = (h @ sd["transformer.h.0.attn.c_attn.weight"].T).split(32, dim=-1)
    want = {"0.attn.act_in": h, "0.attn.q": ref._keep_topk(q, cfg, "attn_q"),
            "0.attn.k": ref._keep_topk(k, cfg, "attn_k"),
            "0.attn.v": ref._keep_topk(v, cfg, "attn_v")}
    for name in names:
        assert torch.allclose(seen[name], want[name], atol=1e-5, rtol=0), name
        assert ((seen[name] != 0).sum(-1) <= 8).all()  # k = int(0.25 x 32) over all 4 heads


def test_their_model_round_trips_bit_exactly(make_model_dir, tmp_path):
    model_dir, cfg, sd = make_model_dir(bias=True, tied_unembed=True)
    import_openai(model_dir, tmp_path / "ours")
    assert export_openai(tmp_path / "ours", tmp_path / "back") == []
    back = torch.load(tmp_path / "back" / "final_model.pt", weights_only=True)
    assert set(back) == set(sd)
    for name, tensor in sd.items():
        assert back[name].dtype == torch.float32 and torch.equal(back[name], tensor), name
    assert (tmp_path / "back" / "vocab.bpe").read_text() == (model_dir / "vocab.bpe").read_text()
    encoder = json.loads((tmp_path / "back" / "encoder.json").read_text())
    assert encoder == json.loads((model_dir / "encoder.json").read_text())
    got = json.loads((tmp_path / "back" / "beeg_config.json").read_text())
    for key in ("block_size", "vocab_size", "n_layer", "n_head", "d_head", "d_model", "d_mlp",
                "bias", "rms_norm", "activation_type", "afrac", "afrac_loctypes", "sink",
                "tied_unembed", "enable_bigram_table", "tokenizer_name"):
        assert got[key] == cfg[key], key
    # and a second import of the export is the same checkpoint, byte for byte
    import_openai(tmp_path / "back", tmp_path / "again")
    for f in ("model.safetensors", "tokenizer.json"):
        a = (tmp_path / "ours" / "checkpoint" / f).read_bytes()
        assert a == (tmp_path / "again" / "checkpoint" / f).read_bytes(), f


def test_our_model_round_trips(tmp_path):
    """Ours -> theirs -> ours: every tensor comes back bit-exactly, token ids renumbered to
    tiktoken's ranks (the permutation is applied to the weights, so the model is the same)."""
    tok = train_tokenizer(corpus_texts()[:20], vocab_size=300)
    mcfg = ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_ctx=16, norm_eps=RMSNORM_EPS,
                       abstopk_rounding="floor")
    torch.manual_seed(0)
    model = GPT(mcfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # no zero biases, sinks or tables left
    write_checkpoint(tmp_path / "ours", RunConfig(model=mcfg), model.state_dict(), tok.to_str(),
                     {"step": 0})
    notes = export_openai(tmp_path / "ours", tmp_path / "theirs")
    assert any("renumbered" in n for n in notes) and any("regex" in n for n in notes)
    import_openai(tmp_path / "theirs", tmp_path / "back")
    back = load_checkpoint(tmp_path / "back")
    assert back.config.model == mcfg
    encoder = json.loads((tmp_path / "theirs" / "encoder.json").read_text())
    new_id = torch.tensor([encoder[t] for t, _ in sorted(
        {**tok.get_vocab()}.items(), key=lambda kv: kv[1])])
    before, after = model.state_dict(), back.model.state_dict()
    for name, tensor in before.items():
        if name in ("embed.weight", "unembed.weight", "logits_bias"):
            tensor = torch.empty_like(tensor).index_copy_(0, new_id, tensor)
        elif name == "bigram":
            tensor = torch.empty_like(tensor).index_copy_(0, new_id, tensor)
            tensor = torch.empty_like(tensor).index_copy_(1, new_id, tensor)
        assert torch.equal(after[name], tensor), name
    # Same tokens, same meaning: the byte strings behind each id moved with the weights.
    for text, ours_id in tok.get_vocab().items():
        assert back.tokenizer.id_to_token(encoder[text]) == text and new_id[ours_id] == encoder[
            text]


def test_export_refuses_a_k_their_code_would_compute_differently(tmp_path):
    tok = Tokenizer.from_str(train_tokenizer(corpus_texts()[:10], vocab_size=300).to_str())
    mcfg = ModelConfig(vocab_size=300, n_layer=1, d_model=48, n_ctx=16, abstopk_fraction=0.3)
    write_checkpoint(tmp_path / "ours", RunConfig(model=mcfg), GPT(mcfg).state_dict(),
                     tok.to_str(), {"step": 0})
    with pytest.raises(OpenAIFormatError, match=r"keeps 58 of 192 features at mlp.post_act, "
                       r"but their code keeps int\(afrac x 192\) = 57") as err:
        export_openai(tmp_path / "ours", tmp_path / "theirs")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "theirs").exists()
