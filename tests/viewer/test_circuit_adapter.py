"""The viewer's view of a circuit read by the one reader (circuits/circuit_file.py)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from sparsecircuits.circuits.circuit_file import load_circuit
from sparsecircuits.model.locations import NODE_KINDS
from sparsecircuits.viewer.app import STATIC_DIR
from sparsecircuits.viewer.circuit_adapter import read_circuit
from sparsecircuits.viewer.workspace import NotFoundError, Workspace, find_circuit_model
from tests.viewer.conftest import TASK


def test_the_view_of_the_pruners_circuit(pruned):
    doc = json.loads(pruned.read_text())
    c = read_circuit(pruned)
    assert c.task == TASK and c.name == TASK and c.circuit == load_circuit(pruned)
    assert list(c.nodes) == [n["name"] for n in doc["nodes"]]
    assert [(e.source, e.target, e.weight) for e in c.edges] == [tuple(e) for e in doc["edges"]]
    assert len(c.residual_links) == len(doc["residual_links"])
    assert all(e.weight is None for e in c.residual_links)
    assert c.sidecar == pruned.parent / doc["tensors"]["file"]
    assert c.calibration == (doc["calibration"]["scale"], doc["calibration"]["shift"])
    assert sorted(c.candidates) == sorted(x["id"] for x in doc["task"]["candidates"])
    assert c.losses["val_after_calibration"] == doc["losses"]["val_after_calibration"]
    assert c.counts["edges"] == doc["counts"]["edges"] and c.ablation == "mean"
    assert c.node_meta[c.nodes[0]]["mask_score"] == doc["nodes"][0]["mask_score"]
    assert c.summary["target_loss"] == doc["target_loss"]


def test_every_node_kind_is_one_the_front_end_draws():
    graph_js = (STATIC_DIR / "graph.js").read_text(encoding="utf-8")
    kinds = re.search(r"KINDS = \{(.*?)\n  \};", graph_js, re.S)
    assert kinds is not None, "graph.js no longer declares its KINDS table"
    drawn = set(re.findall(r"^\s*(\w+): \{", kinds.group(1), re.M))
    assert set(NODE_KINDS) <= drawn


def test_a_moved_model_is_found_by_its_content_hash(pruned, artifacts):
    moved = artifacts / "moved"
    moved.mkdir()
    try:
        shutil.copytree(pruned.parent, moved, dirs_exist_ok=True)  # the pair travels together
        doc = json.loads((moved / "circuit.json").read_text())
        doc["model"]["path"] = "/nowhere/checkpoint"
        (moved / "circuit.json").write_text(json.dumps(doc))
        ws = Workspace(artifacts)
        found = find_circuit_model(read_circuit(moved / "circuit.json"), ws.root, ws.scan().models)
        ckpt, warnings = found
        assert ckpt == (artifacts / "runs" / "tiny" / "checkpoint").resolve()
        assert "content hash" in warnings[0]
        doc["model"]["content_hash"] = "0" * 64
        (moved / "circuit.json").write_text(json.dumps(doc))
        with pytest.raises(NotFoundError, match="cannot find the model"):
            find_circuit_model(read_circuit(moved / "circuit.json"), ws.root, ws.scan().models)
    finally:
        shutil.rmtree(moved)
