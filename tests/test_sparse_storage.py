"""Sparse storage (indices + values in safetensors): bit-exact, chosen when smaller, checked."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save, save_file

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.config import load_config
from sparsecircuits.data.prepare import prepare_data
from sparsecircuits.errors import CheckpointError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.sparse_storage import decode, encode, sparse_names
from sparsecircuits.train.sparsity import project_, sparse_parameters
from sparsecircuits.zoo import SIZE_LIMIT, compact_state, export_model
from tests.conftest import TEST_DATA

W = "blocks.0.mlp.fc_in.weight"
"""The matrix the corruption cases damage."""


def _bits(t: torch.Tensor) -> torch.Tensor:
    """`t`'s bit patterns, with -0.0 as +0.0 (sparse storage keeps the nonzeros only)."""
    t = torch.where(t == 0, torch.zeros_like(t), t)
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _sparse_tensor(shape, fraction, dtype, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g)
    t = t * (torch.rand(shape, generator=g) < fraction)
    return t.to(dtype)


def test_dense_sparse_dense_is_bit_exact_for_every_float_dtype():
    state = {f"m{i}": _sparse_tensor((24, 40), 0.1, dtype, seed=i)
             for i, dtype in enumerate((torch.float32, torch.float16, torch.bfloat16))}  # fmt: skip
    state["m0"][3, 5] = -0.0  # reads back as +0.0
    state["m1"][0, 0] = 1e-7  # a float16 subnormal
    state["m2"][1, 1] = float("nan")  # stored like any nonzero (the loader then refuses it)
    restored = decode(load_bytes(save(encode(state, "sparse"))), "mem")
    assert sorted(restored) == sorted(state)
    for name, t in state.items():
        assert restored[name].dtype == t.dtype and restored[name].shape == t.shape
        assert torch.equal(_bits(restored[name]), _bits(t)), name
    assert restored["m0"][3, 5].item() == 0.0 and restored["m2"][1, 1].isnan()


def test_a_file_without_sparse_tensors_reads_unchanged():
    state = {"a": torch.randn(3, 4), "b": torch.zeros(5)}
    assert encode(state, "dense").keys() == state.keys()
    restored = decode(load_bytes(save(state)), "mem")
    assert all(torch.equal(restored[k], state[k]) for k in state)


def test_auto_stores_each_tensor_in_the_smaller_form():
    state = {"sparse": _sparse_tensor((64, 64), 1 / 8, torch.float16),
             "dense": torch.randn(64, 64).half(), "bias": torch.randn(16).half()}  # fmt: skip
    auto = encode(state, "auto")
    assert sparse_names(auto) == ["sparse"]
    size = {form: len(save(encode(state, form))) for form in ("auto", "dense", "sparse")}
    assert size["auto"] < size["dense"] and size["auto"] < size["sparse"], size


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    """The tiny run exported in each storage form."""
    root = tmp_path_factory.mktemp("exports")
    for form in ("auto", "dense", "sparse"):
        export_model(tiny_run, root / form, command="x", tasks=False, storage=form)
    return root


def test_export_picks_sparse_when_smaller_and_every_form_loads_the_same_weights(exports):
    size = {f: (exports / f / "checkpoint" / "model.safetensors").stat().st_size
            for f in ("auto", "dense", "sparse")}  # fmt: skip
    assert size["auto"] < size["dense"] and size["auto"] < size["sparse"], size
    stored = load_file(str(exports / "auto" / "checkpoint" / "model.safetensors"))
    names = sparse_names(stored)
    assert W in names and "bigram" not in names  # the trained bigram table is dense
    assert "indices + values" in (exports / "auto" / "CARD.md").read_text()
    dense = ckpt.load_checkpoint(exports / "dense").model.state_dict()
    for form in ("auto", "sparse"):
        loaded = ckpt.load_checkpoint(exports / form).model.state_dict()
        for name, t in dense.items():
            assert torch.equal(_bits(loaded[name]), _bits(t)), (form, name)


def _damaged(tensors: dict, change) -> dict:
    tensors = dict(tensors)
    change(tensors)
    return tensors


def _set(name: str, value: torch.Tensor):
    return lambda t: t.__setitem__(name, value)


def _edit_index(position: int, value: int | None = None, copy_from: int | None = None):
    def change(t):
        idx = t[W + ".__indices"].clone()
        idx[position] = value if copy_from is None else idx[copy_from]
        t[W + ".__indices"] = idx
    return change


CORRUPT = {
    "out of range": (_edit_index(-1, 10**6), "index 1000000 is out of range"),
    "negative": (_edit_index(0, -1), "index -1 is out of range"),
    "duplicate": (_edit_index(1, copy_from=0), "appears twice"),
    "unsorted": (lambda t: t.__setitem__(W + ".__indices", t[W + ".__indices"].flip(0)),
                 "not in increasing order"),
    "int64 indices": (lambda t: t.__setitem__(W + ".__indices", t[W + ".__indices"].long()),
                      "must be a 1-D int32 tensor, got int64"),
    "float indices": (lambda t: t.__setitem__(W + ".__indices", t[W + ".__indices"].float()),
                      "must be a 1-D int32 tensor, got float32"),
    "2-D indices": (lambda t: t.__setitem__(W + ".__indices", t[W + ".__indices"][None]),
                    "must be a 1-D int32 tensor"),
    "lengths": (lambda t: t.__setitem__(W + ".__values", t[W + ".__values"][:-1]),
                "indices but"),
    "int values": (lambda t: t.__setitem__(W + ".__values", t[W + ".__values"].int()),
                   "must be a 1-D floating point tensor"),
    "no values": (lambda t: t.pop(W + ".__values"), "has no " + W + ".__values"),
    "no shape": (lambda t: t.pop(W + ".__shape"), "has no " + W + ".__shape"),
    "wrong shape": (_set(W + ".__shape", torch.tensor([7, 9])), "expected"),
    "huge shape": (_set(W + ".__shape", torch.tensor([2**40, 2**40])), "not a valid shape"),
    "int32 shape": (_set(W + ".__shape", torch.tensor([1, 1], dtype=torch.int32)),
                    "must be a 1-D int64 tensor"),
    "dense and sparse": (_set(W, torch.zeros(1)), "stored both dense and sparse"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_index_is_a_one_line_error(exports, tmp_path, case):
    ck = tmp_path / "ck"
    shutil.copytree(exports / "sparse" / "checkpoint", ck)
    change, message = CORRUPT[case]
    save_file(_damaged(load_file(str(ck / "model.safetensors")), change),
              str(ck / "model.safetensors"))  # fmt: skip
    with pytest.raises(CheckpointError, match=message) as err:
        ckpt.load_checkpoint(ck)
    assert "\n" not in str(err.value) and W in str(err.value)


def test_the_cli_reports_a_corrupt_index_in_one_line(exports, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(exports / "sparse" / "checkpoint", ck)
    change, message = CORRUPT["out of range"]
    save_file(_damaged(load_file(str(ck / "model.safetensors")), change),
              str(ck / "model.safetensors"))  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "sparsecircuits", "eval", str(ck)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_d512_at_one_64th_exports_under_the_zoo_limit(data_cache, tmp_path):
    """The demo's shape widened to d_model 512 at weight fraction 1/64 (its L0 about the
    demo's), freshly initialised and projected; the bigram table filled like a trained one
    (dense), since an all-zero table would flatter the size."""
    cfg = load_config("demo", {**TEST_DATA, "data.cache_dir": str(data_cache),
                               "model.d_model": 512, "sparsity.weight_fraction": 1 / 64,
                               "train.batch_size": 1, "train.eval_batches": 1})  # fmt: skip
    tokenizer_json = prepare_data(cfg.data, cfg.model.vocab_size).tokenizer_path.read_text()
    torch.manual_seed(0)
    model = GPT(cfg.model)
    project_(sparse_parameters(model), cfg.sparsity.weight_fraction, cfg.sparsity.min_per_node)
    with torch.no_grad():
        model.bigram.normal_(0.0, 0.5)
    run = tmp_path / "run"
    ckpt.write_checkpoint(run / ckpt.CHECKPOINT_DIR, cfg, model.state_dict(),
                          tokenizer_json, {"step": 0})  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "sparsecircuits", "export", str(run), "--out",
                        str(tmp_path / "d512"), "--command", "x", "--no-tasks"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    size = (tmp_path / "d512" / "checkpoint" / "model.safetensors").stat().st_size
    compact = compact_state(model.state_dict())
    dense_size = sum(t.numel() * t.element_size() for t in compact.values())
    bigram = compact["bigram"].numel() * compact["bigram"].element_size()
    print(f"\nd512 f1/64: exported {size / 2**20:.2f} MiB (bigram {bigram / 2**20:.2f} MiB "
          f"{compact['bigram'].dtype}); dense half precision {dense_size / 2**20:.2f} MiB")
    assert size < SIZE_LIMIT < dense_size
    loaded = ckpt.load_checkpoint(tmp_path / "d512").model.state_dict()
    for name, t in compact.items():
        assert torch.equal(loaded[name], t.float()), name
