import json
import os
import shutil
import stat
import threading

import pytest
import torch
from safetensors.torch import save_file

from sparsecircuits.checkpoint import content_hash, load_checkpoint
from sparsecircuits.circuits.ablation import (
    MeanAblation,
    PretrainingWindows,
    ResampleAblation,
    ZeroAblation,
    build_ablation,
    cached_means,
    load_cached_means,
    pretraining_means,
    record_means,
)
from sparsecircuits.errors import CircuitError
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


def test_cache_files_are_readable_by_others_and_leave_no_temporary_file(tmp_path):
    model = planted_model()
    cached_means(model, _Fixed(random_windows(8)), "abc", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["abc-8.safetensors"]
    assert stat.S_IMODE((tmp_path / "abc-8.safetensors").stat().st_mode) == 0o644


def test_two_runs_at_once_on_a_damaged_cache_entry_both_succeed(tmp_path, monkeypatch, caplog):
    """Both runs find the entry damaged and recompute it; neither renames its file into place
    until both have written theirs (a barrier in os.replace), the moment at which two writers
    sharing one temporary file name collide (the second rename finds no file)."""
    caplog.set_level("WARNING", logger="sparsecircuits.circuits.ablation")
    model = planted_model()
    (tmp_path / "abc-8.safetensors").write_bytes(b"damaged")
    barrier = threading.Barrier(2, timeout=60)
    real_replace = os.replace

    def replace_together(src, dst, *args, **kwargs):
        if str(dst).endswith("abc-8.safetensors"):
            barrier.wait()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace_together)
    results, errors = {}, []

    def run(i: int) -> None:
        try:
            results[i] = cached_means(model, _Fixed(random_windows(8)), "abc", tmp_path)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    monkeypatch.undo()
    assert errors == [] and len(results) == 2
    assert not [r for r in caplog.records if "could not cache" in r.getMessage()]
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert [p.name for p in tmp_path.iterdir()] == ["abc-8.safetensors"]
    found = load_cached_means("abc", model.location_width, tmp_path, 8)
    assert found is not None and all(
        torch.equal(found.means[k], results[0][k]) for k in found.means
    )


def _means_file(path, means, **meta):
    metadata = {"format": "sparsecircuits.means", "version": "1", "key": "abc", **meta}
    save_file({k: v.contiguous() for k, v in means.items()}, str(path), metadata=metadata)


@pytest.mark.parametrize(
    "change",
    [
        {"meta": {"key": "other"}},
        {"meta": {"format": "something.else"}},
        {"meta": {"version": "0"}},
        {"drop": "0.mlp.post_act"},
        {"location": ("0.mlp.post_act", torch.zeros(3))},
        {"location": ("0.mlp.post_act", torch.full((128,), float("nan")))},
        {"location": ("0.mlp.post_act", torch.zeros(128, dtype=torch.int32))},
    ],
)
def test_a_cache_file_that_does_not_fit_is_skipped_by_every_reader(tmp_path, change):
    model = planted_model()
    means = record_means(model, random_windows(4))
    means = {**means}
    if "drop" in change:
        means.pop(change["drop"])
    if "location" in change:
        loc, value = change["location"]
        means[loc] = value
    _means_file(tmp_path / "abc-4.safetensors", means, **change.get("meta", {}))
    assert load_cached_means("abc", model.location_width, tmp_path) is None
    assert load_cached_means("abc", model.location_width, tmp_path, 4) is None


def test_without_a_window_count_the_entry_with_the_most_windows_is_read(tmp_path):
    model = planted_model()
    for n in (4, 16, 8):
        cached_means(model, _Fixed(random_windows(n, seed=n)), "abc", tmp_path)
    found = load_cached_means("abc", model.location_width, tmp_path)
    assert found.file.name == "abc-16.safetensors"
    expected = record_means(model, random_windows(16, seed=16))
    assert all(torch.equal(found.means[k], expected[k]) for k in expected)


def test_mean_ablation_round_trips_through_its_tensors():
    model = planted_model()
    ablation = MeanAblation(record_means(model, random_windows(4)))
    tensors = {"mask_scores": torch.zeros(3), **ablation.tensors()}
    again = MeanAblation.from_tensors(tensors, model.location_width)
    assert all(torch.equal(again.means[k], ablation.means[k]) for k in ablation.means)
    assert MeanAblation.from_tensors({"mask_scores": torch.zeros(3)}, model.location_width) is None
    widths = {**model.location_width, "0.mlp.post_act": 7}
    with pytest.raises(CircuitError, match="do not fit this model"):
        MeanAblation.from_tensors(tensors, widths)


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


@pytest.mark.slow
def test_pretraining_means_are_the_pruners_means(tiny_run, tmp_path):
    """What the viewer uses: the pruner's cache when it has an entry, else the same numbers
    computed the pruner's way (and nothing written)."""
    loaded = load_checkpoint(tiny_run)
    key = content_hash(loaded.path)
    computed, where = pretraining_means(loaded, key, 4, tmp_path)
    assert "4 pretraining windows" in where and list(tmp_path.iterdir()) == []
    pruner = build_ablation("mean", loaded.model, PretrainingWindows(loaded, 4), 1, key, tmp_path)
    assert all(torch.equal(computed[k], pruner.means[k]) for k in computed)
    cached, where = pretraining_means(loaded, key, 4, tmp_path)
    assert where == f"pruner's mean cache {key}-4.safetensors"
    assert all(torch.equal(cached[k], computed[k]) for k in computed)
