"""SAE files: round trip, and one-line errors for anything unusable."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsecircuits.errors import SAEError
from sparsecircuits.sae.sae_file import (
    META_KEY,
    SAE_FILE,
    check_fits,
    check_location_matches,
    load_sae,
    save_sae,
)


def _meta(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()[META_KEY])


def test_save_and_load_round_trip_bit_exact(tiny_sae, tmp_path):
    handle = load_sae(tiny_sae)
    save_sae(tmp_path, handle.sae, handle.meta)
    again = load_sae(tmp_path / SAE_FILE)
    assert again.meta == handle.meta
    for name, t in handle.sae.tensors().items():
        assert torch.equal(again.sae.tensors()[name], t)
    doc = _meta(tmp_path / SAE_FILE)
    assert doc["format"] == "sparsecircuits.sae" and doc["format_version"] == 1
    assert doc["model"]["content_hash"] == handle.meta["model"]["content_hash"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b"not a safetensors file"), "not a readable safetensors"),
        (lambda p: p.write_bytes(p.read_bytes()[:-40]), "not a readable safetensors"),
        (lambda p: save_file(load_file(p), p), "no 'sparsecircuits.sae' metadata"),
    ],
)
def test_a_corrupt_sae_file_is_a_one_line_error(tiny_sae, tmp_path, damage, message):
    path = tmp_path / SAE_FILE
    path.write_bytes((tiny_sae / SAE_FILE).read_bytes())
    damage(path)
    with pytest.raises(SAEError, match=message) as err:
        load_sae(tmp_path)
    assert "\n" not in str(err.value)


def _rewrite(src, dst, doc_change=None, tensor_change=None):
    tensors = load_file(src)
    doc = _meta(src)
    if doc_change:
        doc_change(doc)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, dst, metadata={META_KEY: json.dumps(doc)})


@pytest.mark.parametrize(
    "doc_change, tensor_change, message",
    [
        (lambda d: d.update(format_version=99), None, "format version 99"),
        (lambda d: d.update(format="other"), None, "no 'sparsecircuits.sae' marker"),
        (lambda d: d.update(k=128), None, "k=128 must be smaller than d_sae=128"),
        (lambda d: d.update(architecture="gated"), None, "unknown SAE architecture"),
        (None, lambda t: t.update(W_dec=t["W_dec"][:5]), "W_dec has shape"),
        (None, lambda t: t["b_enc"].fill_(float("nan")), "b_enc holds NaN"),
        (None, lambda t: t.pop("b_dec"), "b_dec is missing"),
        (None, lambda t: t.update(extra=torch.zeros(2)), "unexpected tensors"),
    ],
)
def test_an_sae_file_that_does_not_hold_together_is_refused(
    tiny_sae, tmp_path, doc_change, tensor_change, message
):
    _rewrite(tiny_sae / SAE_FILE, tmp_path / SAE_FILE, doc_change, tensor_change)
    with pytest.raises(SAEError, match=message):
        load_sae(tmp_path)


def test_an_sae_of_another_model_or_location_does_not_fit(tiny_sae, tiny_loaded, tmp_path):
    handle = load_sae(tiny_sae)
    check_fits(handle, tiny_loaded)  # its own model: fine
    check_location_matches(handle, "1.resid_mid")
    with pytest.raises(SAEError, match="trained at 1.resid_mid, not 0.resid_mid"):
        check_location_matches(handle, "0.resid_mid")
    handle.meta["model"]["content_hash"] = "0" * 64
    with pytest.raises(SAEError, match="trained on another model"):
        check_fits(handle, tiny_loaded)
    handle = load_sae(tiny_sae)
    handle.meta["location"] = "0.mlp.post_act"  # 128 wide, the SAE reads 32
    with pytest.raises(SAEError, match="encodes 32-wide activations"):
        check_fits(handle, tiny_loaded)
