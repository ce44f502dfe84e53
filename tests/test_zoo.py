"""Exporting a run to the model zoo: compact, loadable, honest card, never overwrites."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits import checkpoint as ckpt
from sparsecircuits import zoo
from sparsecircuits.errors import CheckpointError
from sparsecircuits.zoo import compact_state, export_model


def test_export_keeps_every_zero_pattern_and_loads_like_a_run(tiny_run, tmp_path):
    card = export_model(tiny_run, tmp_path / "m", command="sparsecircuits train -c tiny",
                        tasks=False)  # fmt: skip
    original = ckpt.load_checkpoint(tiny_run).model.state_dict()
    exported = ckpt.load_checkpoint(tmp_path / "m")
    for name, t in exported.model.state_dict().items():
        assert t.dtype == torch.float32
        assert torch.equal(t != 0, original[name] != 0), name
        assert torch.allclose(t, original[name], rtol=1e-3, atol=1e-6), name
    assert not (tmp_path / "m" / "checkpoint" / "trainer.safetensors").exists()
    assert (tmp_path / "m" / "metrics.jsonl").read_text() == (tiny_run / "metrics.jsonl").read_text()
    text = card.read_text()
    assert "`sparsecircuits train -c tiny`" in text and "val loss of this copy" in text


def test_half_precision_only_where_the_zero_pattern_survives():
    state = {"a": torch.tensor([0.0, 1.5, -2.0]), "tiny": torch.tensor([0.0, 1e-9]),
             "huge": torch.tensor([1e6]), "denormal": torch.tensor([1e-44, 1.0]),
             "ids": torch.tensor([1, 2])}  # fmt: skip
    out = compact_state(state)
    assert out["a"].dtype == torch.float16
    assert out["tiny"].dtype == torch.bfloat16  # 1e-9 would flush to zero in float16
    assert out["huge"].dtype == torch.bfloat16  # 1e6 overflows float16
    assert out["denormal"].dtype == torch.float32  # below bfloat16's range too
    assert out["ids"].dtype == torch.int64


def test_export_never_overwrites_and_leaves_nothing_behind_on_failure(tiny_run, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists"):
        export_model(tiny_run, tmp_path / "taken", command="x", tasks=False)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    monkeypatch.setattr(zoo, "SIZE_LIMIT", 1000)
    with pytest.raises(CheckpointError, match="over the zoo"):
        export_model(tiny_run, tmp_path / "big", command="x", tasks=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
