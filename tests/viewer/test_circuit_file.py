"""Reading circuit files: the pruner's real output, a minimal hand-written one, bad ones."""

from __future__ import annotations

import json

import pytest

from sparsecircuits.errors import CircuitError
from sparsecircuits.viewer.circuit_file import is_circuit_file, read_circuit
from sparsecircuits.viewer.workspace import NotFoundError, Workspace, find_circuit_model
from tests.viewer.conftest import TASK


def test_reads_the_pruners_circuit_with_its_sidecar_and_calibration(pruned):
    doc = json.loads(pruned.read_text())
    c = read_circuit(pruned)
    assert c.task == TASK and c.name == TASK
    assert list(c.nodes) == [n["name"] for n in doc["nodes"]]
    assert [(e.source, e.target, e.weight) for e in c.edges] == [tuple(e) for e in doc["edges"]]
    assert len(c.residual_links) == len(doc["residual_links"])
    assert all(e.weight is None for e in c.residual_links)
    assert c.means_file == pruned.parent / doc["tensors"]
    assert c.calibration == (doc["calibration"]["scale"], doc["calibration"]["shift"])
    assert sorted(c.candidates) == sorted(x["id"] for x in doc["task"]["candidates"])
    assert c.losses["val_after_calibration"] == doc["losses"]["val_after_calibration"]
    assert c.counts["edges"] == doc["counts"]["edges"] and c.ablation == "mean"
    assert c.node_meta[c.nodes[0]]["mask_score"] == doc["nodes"][0]["mask_score"]


def minimal(**changes) -> dict:
    doc = {
        "format": "sparsecircuits.circuit", "format_version": 1, "task": TASK,
        "nodes": ["0.mlp.post_act.3", "0.mlp.act_in.1"],
        "edges": [{"source": "0.mlp.act_in.1", "target": "0.mlp.post_act.3", "weight": 0.5}],
        "model": "runs/tiny",
    }
    doc.update(changes)
    return doc


def test_reads_a_minimal_file_with_other_spellings(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(minimal()))
    c = read_circuit(path)
    assert c.nodes == ("0.mlp.post_act.3", "0.mlp.act_in.1")
    assert c.edges[0].weight == 0.5 and c.model_path == "runs/tiny" and c.model_hash is None
    assert c.counts == {"nodes": 2, "edges": 1} and c.means_file is None
    assert is_circuit_file(path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "something.else"}, "not a circuit file"),
        (minimal(format_version=2), "format version 2"),
        (minimal(task=None), "names no task"),
        (minimal(nodes="0.mlp.post_act.3"), "no list of nodes"),
        (minimal(nodes=["0.mlp.post_act"]), "not a node name"),
        (minimal(edges=[["0.mlp.act_in.1", "0.mlp.post_act.3"]]), "no weight"),
        (minimal(edges=[["0.mlp.act_in.1", "0.mlp.post_act.3", "big"]]), "not a number"),
        (minimal(edges=[[1, "0.mlp.post_act.3", 0.5]]), "not a node name"),
        (minimal(edges=[["a", "b", 1, 2]]), r"not \[source, target, weight\]"),
    ],
)
def test_bad_files_are_one_line_circuit_errors(tmp_path, doc, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CircuitError, match=message):
        read_circuit(path)


def test_corrupt_and_missing_files(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"format": "sparsecircuits.circuit", ')
    with pytest.raises(CircuitError, match="not valid JSON"):
        read_circuit(path)
    assert not is_circuit_file(path)
    with pytest.raises(CircuitError, match="does not exist"):
        read_circuit(tmp_path / "missing.json")


def test_a_moved_model_is_found_by_its_content_hash(pruned, artifacts, tmp_path):
    doc = json.loads(pruned.read_text())
    doc["model"]["path"] = "/nowhere/checkpoint"
    moved = artifacts / "moved" / "circuit.json"
    moved.parent.mkdir()
    moved.write_text(json.dumps(doc))
    try:
        ws = Workspace(artifacts)
        ckpt, warnings = find_circuit_model(read_circuit(moved), ws.root, ws.scan().models)
        assert ckpt == (artifacts / "runs" / "tiny" / "checkpoint").resolve()
        assert "content hash" in warnings[0]
        doc["model"]["content_hash"] = "0" * 64
        moved.write_text(json.dumps(doc))
        with pytest.raises(NotFoundError, match="cannot find the model"):
            find_circuit_model(read_circuit(moved), ws.root, ws.scan().models)
    finally:
        moved.unlink()
        moved.parent.rmdir()
