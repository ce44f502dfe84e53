import json
import shutil

import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuits.ablation import (
    PretrainingWindows,
    ResampleAblation,
    ZeroAblation,
    build_ablation,
    cached_means,
    record_means,
)
from sparsecircuits.model.hooks import Recorder
from tests.circuits.planted import planted_model, random_windows


class _Fixed:
    """Stands in for PretrainingWindows when the windows are already at hand."""

    def __init__(self, windows):
        self.windows, self.n_windows = windows, len(windows)

    def get(self):
        return self.windows


def test_means_are_the_average_activation_over_every_position():
    model = planted_model()
    windows = random_windows(8)
    means = record_means(model, windows)
    rec = Recorder(model.locations)
    model(windows, hooks=rec.hooks)
    for loc, act in rec.acts.items():
        assert torch.allclose(means[loc], act.double().mean(dim=(0, 1)).float(), atol=1e-6)
    assert float(means["0.mlp.post_act"][5]) > 0  # the A neuron fires on some positions


def test_means_are_cached_by_key_and_a_bad_cache_file_is_recomputed(tmp_path):
    model = planted_model()
    first = cached_means(model, _Fixed(random_windows(8)), "abc", tmp_path)
    files = list(tmp_path.glob("abc-8.safetensors"))
    assert len(files) == 1
    # Same key: read from disk, not recomputed (other windows would give other means).
    again = cached_means(model, _Fixed(random_windows(8, seed=9)), "abc", tmp_path)
    assert all(torch.equal(first[k], again[k]) for k in first)
    files[0].write_bytes(b"not a safetensors file")
    redone = cached_means(model, _Fixed(random_windows(8, seed=9)), "abc", tmp_path)
    assert not torch.equal(redone["0.mlp.post_act"], first["0.mlp.post_act"])


def test_zero_and_resample_ablation():
    model = planted_model()
    zero = ZeroAblation(model.location_width)
    assert all(float(v.abs().sum()) == 0 for v in zero.values(3, 5).values())
    # Bank row r holds the value r everywhere: a draw must use one row for every location.
    bank = {
        loc: torch.arange(6.0).view(6, 1, 1).expand(6, 10, w).clone()
        for loc, w in model.location_width.items()
    }
    resample = ResampleAblation(bank)
    values = resample.values(4, 7, torch.Generator().manual_seed(0))
    rows = values["0.mlp.post_act"][:, 0, 0]
    for loc, v in values.items():
        assert v.shape == (4, 7, model.location_width[loc])
        assert torch.equal(v[:, :, 0], rows.view(4, 1).expand(4, 7))


def test_resample_bank_holds_real_activations():
    model = planted_model()
    windows = random_windows(4)
    ab = build_ablation("resample", model, _Fixed(windows), seq=9)
    rec = Recorder(["0.mlp.post_act"])
    model(windows[:, :9], hooks=rec.hooks)
    assert torch.allclose(ab.bank["0.mlp.post_act"], rec.acts["0.mlp.post_act"])


@pytest.mark.slow
def test_pretraining_windows_are_in_the_checkpoints_own_token_ids(tiny_run, tmp_path):
    loaded = load_checkpoint(tiny_run)
    windows = PretrainingWindows(loaded, 4).get()
    assert windows.shape == (4, loaded.config.model.n_ctx)
    # Same vocab size, two ids swapped: the corpus is re-encoded in the checkpoint's own ids.
    ck = tmp_path / "ck"
    shutil.copytree(tiny_run / "checkpoint", ck)
    tok = json.loads((ck / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    ids, counts = windows.unique(return_counts=True)
    ia, ib = ids[counts.argsort(descending=True)[:2]].tolist()  # two ids the windows use
    a, b = (next(t for t, i in vocab.items() if i == x) for x in (ia, ib))
    vocab[a], vocab[b] = ib, ia
    (ck / "tokenizer.json").write_text(json.dumps(tok))
    foreign = PretrainingWindows(load_checkpoint(ck), 4).get()
    swapped = windows.clone()
    swapped[windows == ia], swapped[windows == ib] = ib, ia
    assert torch.equal(foreign, swapped) and not torch.equal(foreign, windows)
