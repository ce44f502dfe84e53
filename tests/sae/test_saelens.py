"""SAELens 6 format: what export writes, and export -> import gives back the same SAE."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.errors import SAEError
from sparsecircuits.sae.sae_file import SAE_FILE, load_sae, save_sae
from sparsecircuits.sae.saelens import CFG_FILE, WEIGHTS_FILE, export_saelens, import_saelens
from sparsecircuits.sae.trainer import train_sae

from .conftest import TINY_SAE


def test_export_writes_saelens_cfg_and_tensors(tiny_sae, tmp_path):
    handle = load_sae(tiny_sae)
    export_saelens(handle, tmp_path)
    cfg = json.loads((tmp_path / CFG_FILE).read_text())
    assert cfg["architecture"] == "topk"
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"]) == (32, 128, 8)
    assert cfg["apply_b_dec_to_input"] is True and cfg["normalize_activations"] == "none"
    assert cfg["rescale_acts_by_decoder_norm"] is False and cfg["dtype"] == "float32"
    meta = cfg["metadata"]
    assert meta["hook_name"] == "1.resid_mid" and meta["hook_layer"] == 1
    assert meta["model_name"] == handle.meta["model"]["path"]
    assert meta["sparsecircuits"]["model"]["content_hash"] == handle.meta["model"]["content_hash"]
    tensors = load_file(tmp_path / WEIGHTS_FILE)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    assert shapes == {"W_enc": (32, 128), "W_dec": (128, 32), "b_enc": (128,), "b_dec": (32,)}


def test_saelens_formula_on_the_exported_tensors_equals_ours(tiny_sae, tmp_path):
    """SAELens TopK: ReLU(topk((x - b_dec) @ W_enc + b_enc)) @ W_dec + b_dec, written out."""
    handle = load_sae(tiny_sae)
    export_saelens(handle, tmp_path)
    t = load_file(tmp_path / WEIGHTS_FILE)
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]
    top = pre.topk(8, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    assert torch.allclose(z @ t["W_dec"] + t["b_dec"], handle.sae(x), atol=1e-6)


def test_round_trip_ours_saelens_ours_is_bit_exact(tiny_sae, tmp_path):
    handle = load_sae(tiny_sae)
    export_saelens(handle, tmp_path / "lens")
    sae, doc = import_saelens(tmp_path / "lens")
    save_sae(tmp_path / "back", sae, doc)
    assert (tmp_path / "back" / SAE_FILE).read_bytes() == (tiny_sae / SAE_FILE).read_bytes()


def test_batch_topk_exports_as_a_uniform_jumprelu_and_comes_back(tiny_loaded, tmp_path):
    train_sae(tiny_loaded, TINY_SAE.replace(batch_topk=True, tokens=512), tmp_path / "ours",
              progress=False)  # fmt: skip
    handle = load_sae(tmp_path / "ours")
    export_saelens(handle, tmp_path / "lens")
    cfg = json.loads((tmp_path / "lens" / CFG_FILE).read_text())
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg
    threshold = load_file(tmp_path / "lens" / WEIGHTS_FILE)["threshold"]
    assert threshold.shape == (128,) and bool((threshold == handle.sae.threshold).all())
    sae, doc = import_saelens(tmp_path / "lens")
    assert doc == handle.meta and torch.equal(sae.threshold, handle.sae.threshold)


def test_a_foreign_saelens_sae_needs_its_model(tiny_sae, tiny_loaded, tmp_path):
    export_saelens(load_sae(tiny_sae), tmp_path)
    cfg = json.loads((tmp_path / CFG_FILE).read_text())
    del cfg["metadata"]["sparsecircuits"]
    (tmp_path / CFG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEError, match="not exported by sparsecircuits"):
        import_saelens(tmp_path)
    sae, doc = import_saelens(tmp_path, tiny_loaded)
    assert doc["location"] == "1.resid_mid" and doc["k"] == 8
    assert doc["model"]["content_hash"] == tiny_loaded.content_hash


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architecture": "gated"}, "architecture 'gated' cannot be imported"),
        ({"normalize_activations": "layer_norm"}, "normalize_activations='layer_norm' is not"),
        ({"apply_b_dec_to_input": False}, "apply_b_dec_to_input=False is not supported"),
    ],
)
def test_saelens_options_we_cannot_express_are_refused(tiny_sae, tmp_path, change, message):
    export_saelens(load_sae(tiny_sae), tmp_path)
    cfg = {**json.loads((tmp_path / CFG_FILE).read_text()), **change}
    (tmp_path / CFG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(SAEError, match=message):
        import_saelens(tmp_path)
