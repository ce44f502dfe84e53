"""Training: it learns, keeps decoder rows unit norm, and resumes exactly."""

import pytest
import torch

from sparsecircuits.circuits.ablation import pretraining_shard
from sparsecircuits.errors import SAEError
from sparsecircuits.model.hooks import Recorder
from sparsecircuits.sae.activations import ActivationBuffer, check_location, record
from sparsecircuits.sae.model import geometric_median
from sparsecircuits.sae.sae_file import SAE_FILE, TRAINER_FILE, load_sae, load_trainer
from sparsecircuits.sae.trainer import train_sae

from .conftest import TINY_SAE


def test_recording_stops_at_the_location_and_matches_a_full_forward(tiny_loaded):
    model = tiny_loaded.model
    tokens = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(0))
    rec = Recorder(["0.resid_post"])
    model(tokens, hooks=rec.hooks)
    assert torch.equal(record(model, tokens, "0.resid_post"), rec.acts["0.resid_post"])


def test_buffer_batches_depend_only_on_seed_and_step(tiny_loaded):
    shard = pretraining_shard(tiny_loaded, "train")
    make = lambda: ActivationBuffer(tiny_loaded.model, shard, "1.resid_mid", 64, 4, 7)  # noqa: E731
    a, b = make(), make()
    assert torch.equal(a.batch(9), b.batch(9))  # b never saw steps 0..8
    assert a.batches_per_refill == 4 * 64 // 64
    assert not torch.equal(a.batch(0), a.batch(1))
    # Refill 0's batches are a permutation of the positions of its windows.
    whole = torch.cat([a.batch(i) for i in range(a.batches_per_refill)])
    assert torch.equal(whole.sum(0).double().round(decimals=2),
                       a.refill(0).sum(0).double().round(decimals=2))  # fmt: skip


def test_unknown_location_is_a_user_error(tiny_loaded):
    with pytest.raises(SAEError, match="unknown location '7.resid_post'"):
        check_location(tiny_loaded.model, "7.resid_post")


def test_training_lowers_fvu_and_writes_unit_norm_decoder(tiny_sae):
    handle = load_sae(tiny_sae)
    sae, meta = handle.sae, handle.meta
    assert (meta["d_in"], meta["d_sae"], meta["k"]) == (32, 128, 8)
    assert meta["step"] == 12 and meta["trained_tokens"] == 12 * 256
    assert meta["location"] == "1.resid_mid"
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(128), atol=1e-5)
    assert meta["training_metrics"]["fvu"] < 1.0
    assert meta["training_metrics"]["l0"] <= 8
    assert (tiny_sae / TRAINER_FILE).is_file()


def test_b_dec_starts_at_the_geometric_median(tiny_loaded, tmp_path):
    cfg = TINY_SAE.replace(tokens=256, warmup_steps=0, lr=1e-12)  # one step that moves nothing
    train_sae(tiny_loaded, cfg, tmp_path, progress=False)
    shard = pretraining_shard(tiny_loaded, "train")
    buffer = ActivationBuffer(tiny_loaded.model, shard, cfg.location, cfg.batch_size,
                              cfg.buffer_windows, cfg.seed)  # fmt: skip
    expected = geometric_median(buffer.refill(0)[:16384])
    assert torch.allclose(load_sae(tmp_path).sae.b_dec, expected, atol=1e-6)


def test_a_resumed_run_equals_an_uninterrupted_one(tiny_loaded, tiny_sae, tmp_path):
    half = TINY_SAE.replace(tokens=256 * 7)  # a checkpoint at step 5, stopped at 7
    train_sae(tiny_loaded, half, tmp_path, progress=False)
    assert load_trainer(tmp_path)[0]["step"] == 7
    train_sae(tiny_loaded, TINY_SAE, tmp_path, resume=True, progress=False)
    resumed, straight = load_sae(tmp_path), load_sae(tiny_sae)
    for name, t in straight.sae.tensors().items():
        assert torch.equal(resumed.sae.tensors()[name], t), name
    assert resumed.meta["step"] == 12


def test_resume_refuses_a_changed_option(tiny_loaded, tiny_sae, tmp_path):
    (tmp_path / TRAINER_FILE).write_bytes((tiny_sae / TRAINER_FILE).read_bytes())
    with pytest.raises(SAEError, match="trained with k=8"):
        train_sae(tiny_loaded, TINY_SAE.replace(k=4), tmp_path, resume=True, progress=False)


def test_a_new_run_never_overwrites_an_sae(tiny_loaded, tiny_sae, tmp_path):
    (tmp_path / SAE_FILE).write_bytes((tiny_sae / SAE_FILE).read_bytes())
    before = (tmp_path / SAE_FILE).read_bytes()
    with pytest.raises(SAEError, match="already holds an SAE"):
        train_sae(tiny_loaded, TINY_SAE, tmp_path, progress=False)
    assert (tmp_path / SAE_FILE).read_bytes() == before


def test_k_not_below_d_sae_is_refused_before_any_work(tiny_loaded, tmp_path):
    with pytest.raises(SAEError, match="k=128 must be smaller than d_sae=128"):
        train_sae(tiny_loaded, TINY_SAE.replace(k=128), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_batch_topk_trains_a_threshold_and_infers_with_it(tiny_loaded, tmp_path):
    train_sae(tiny_loaded, TINY_SAE.replace(batch_topk=True, tokens=256 * 4), tmp_path,
              progress=False)  # fmt: skip
    handle = load_sae(tmp_path)
    assert handle.meta["architecture"] == "batchtopk"
    assert float(handle.sae.threshold) > 0
    x = torch.randn(5, 32)
    pre = handle.sae.pre_acts(x)
    assert torch.equal(handle.sae.encode(x), pre * (pre > handle.sae.threshold))
