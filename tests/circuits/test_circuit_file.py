import json

import pytest
import torch

from sparsecircuits.circuits.circuit_file import (
    Circuit,
    load_circuit,
    load_circuit_tensors,
    node_kind,
)
from sparsecircuits.errors import CircuitError


def _circuit() -> Circuit:
    return Circuit(
        model={"path": "runs/x/checkpoint", "content_hash": "ab" * 32, "step": 3, "config": {}},
        task={"name": "t", "description": "d", "split_sizes": {"train": 1, "val": 1, "test": 1}},
        ablation="mean",
        target_loss=0.15,
        nodes=[
            {
                "name": "0.mlp.post_act.4",
                "location": "0.mlp.post_act",
                "index": 4,
                "layer": 0,
                "kind": "neuron",
                "mask_score": 0.3,
                "ablation_value": 0.01,
            }
        ],
        edges=[["0.mlp.act_in.1", "0.mlp.post_act.4", 0.5]],
        embed_edges=[["embed.7", "resid.1", -1.0]],
        unembed_edges=[],
        residual_links=[],
        counts={"nodes": 1, "edges": 1},
        losses={"val_before_calibration": 0.1, "nan_one": float("nan")},
        calibration={"scale": 1.0, "shift": 0.0},
        validation={"controls": []},
        baseline=None,
        search=None,
        hyperparameters={"k_coef": 1e-4},
        training={},
        wall_time_s={"total": 1.0},
    )


def test_round_trip_json_and_sidecar_tensors(tmp_path):
    c = _circuit()
    path = c.save(tmp_path / "out", {"mask_scores": torch.arange(3.0)})
    loaded = load_circuit(path)
    assert loaded.node_names == ["0.mlp.post_act.4"]
    assert loaded.edges == c.edges and loaded.counts == c.counts
    assert loaded.losses["nan_one"] is None  # JSON has no NaN
    assert load_circuit(tmp_path / "out").to_dict() == loaded.to_dict()
    assert torch.equal(load_circuit_tensors(path)["mask_scores"], torch.arange(3.0))
    doc = json.loads(path.read_text())
    assert doc["format"] == "sparsecircuits.circuit" and doc["format_version"] == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format_version=2), "version 2"),
        (lambda d: d.pop("format"), "not a sparsecircuits circuit"),
        (lambda d: d.pop("edges"), "missing edges"),
        (lambda d: d.update(edges=[["a", 3]]), "malformed"),
    ],
)
def test_foreign_or_broken_files_are_one_line_errors(tmp_path, mutate, message):
    path = _circuit().save(tmp_path)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(CircuitError, match=message) as err:
        load_circuit(path)
    assert "\n" not in str(err.value)


def test_truncated_or_missing_files(tmp_path):
    path = _circuit().save(tmp_path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(CircuitError, match="corrupt"):
        load_circuit(path)
    with pytest.raises(CircuitError, match="does not exist"):
        load_circuit(tmp_path / "nope.json")


def test_node_kinds():
    assert [
        node_kind(x) for x in ("3.attn.act_in", "0.attn.k", "1.mlp.post_act", "2.mlp.resid_delta")
    ] == ["read", "k", "neuron", "write"]
