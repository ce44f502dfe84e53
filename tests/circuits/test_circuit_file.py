"""The one circuit-file contract: circuit.json + its sidecar, written as a pair, read strictly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sparsecircuits.circuits import circuit_file
from sparsecircuits.circuits.circuit_file import (
    Circuit,
    is_circuit_file,
    load_circuit,
    load_circuit_tensors,
)
from sparsecircuits.errors import CircuitError
from sparsecircuits.model.locations import NODE_KINDS, node_kind, parse_node_name

REPO = Path(__file__).resolve().parents[2]


def _node(name: str, **changes) -> dict:
    location, index = parse_node_name(name)
    node = {"name": name, "location": location, "index": index, "layer": int(name[0]),
            "kind": node_kind(location), "mask_score": 0.3, "ablation_value": 0.01}  # fmt: skip
    node.update(changes)
    return node


def _circuit(**changes) -> Circuit:
    fields = dict(
        model={"path": "runs/x/checkpoint", "content_hash": "ab" * 32, "step": 3, "config": {}},
        task={"name": "t", "description": "d", "split_sizes": {"train": 1, "val": 1, "test": 1},
              "seed": 0, "candidates": [{"id": 7, "text": "'"}], "n_truncated": 0},
        ablation="mean",
        target_loss=0.15,
        nodes=[_node("0.mlp.act_in.1"), _node("0.mlp.post_act.4"), _node("1.attn.act_in.1")],
        edges=[["0.mlp.act_in.1", "0.mlp.post_act.4", 0.5]],
        embed_edges=[["embed.7", "resid.1", -1.0], ["pos_embed.0", "resid.1", 0.25]],
        unembed_edges=[["resid.1", "unembed.7", 2.0]],
        residual_links=[],
        counts={"nodes": 3, "edges": 1, "nodes_per_location": {"0.mlp.post_act": 1}},
        losses={"val_before_calibration": 0.1, "nan_one": float("nan")},
        calibration={"scale": 1.5, "shift": -0.25, "shift_applies_to": "both candidates"},
        validation={"controls": []},
        baseline=None,
        search=None,
        hyperparameters={"k_coef": 1e-4},
        training={},
        wall_time_s={"total": 1.0},
    )  # fmt: skip
    fields.update(changes)
    return Circuit(**fields)


def _sidecars(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.safetensors"))


def test_round_trip_of_the_pair(tmp_path):
    c = _circuit()
    path = c.save(tmp_path / "out", {"mask_scores": torch.arange(3.0)})
    loaded = load_circuit(path)
    assert loaded.node_names == ["0.mlp.act_in.1", "0.mlp.post_act.4", "1.attn.act_in.1"]
    assert loaded.edges == c.edges and loaded.counts == c.counts
    assert loaded.losses["nan_one"] is None  # JSON has no NaN
    assert load_circuit(tmp_path / "out").to_dict() == loaded.to_dict()  # a directory works too
    assert torch.equal(load_circuit_tensors(path)["mask_scores"], torch.arange(3.0))
    doc = json.loads(path.read_text())
    assert doc["format"] == "sparsecircuits.circuit" and doc["format_version"] == 2
    sidecar = path.parent / doc["tensors"]["file"]
    assert doc["tensors"]["sha256"] == hashlib.sha256(sidecar.read_bytes()).hexdigest()
    assert sidecar.name == f"circuit.{doc['tensors']['sha256'][:16]}.safetensors"
    assert is_circuit_file(path)


def test_a_circuit_without_tensors_has_no_sidecar(tmp_path):
    path = _circuit().save(tmp_path)
    assert json.loads(path.read_text())["tensors"] is None
    assert load_circuit_tensors(path) == {} and _sidecars(tmp_path) == []


def test_files_are_created_readable_by_others_like_checkpoints(tmp_path):
    path = _circuit().save(tmp_path, {"x": torch.ones(2)})
    for file in (path, tmp_path / _sidecars(tmp_path)[0]):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_saving_again_replaces_the_pair_and_removes_the_old_sidecar(tmp_path):
    _circuit().save(tmp_path, {"x": torch.zeros(2)})
    first = _sidecars(tmp_path)
    _circuit().save(tmp_path, {"x": torch.zeros(2)})  # identical tensors: the same sidecar
    assert _sidecars(tmp_path) == first
    path = _circuit(target_loss=0.2).save(tmp_path, {"x": torch.ones(2)})
    assert len(_sidecars(tmp_path)) == 1 and _sidecars(tmp_path) != first
    assert torch.equal(load_circuit_tensors(path)["x"], torch.ones(2))
    _circuit().save(tmp_path)  # now without tensors: nothing left to name
    assert _sidecars(tmp_path) == []


class Killed(BaseException):
    """Stands for the process dying at this point (nothing after it runs)."""


def _die(*args, **kwargs):
    raise Killed


@pytest.mark.parametrize("step", ["sidecar", "json", "cleanup"])
def test_a_kill_at_any_step_leaves_a_consistent_pair(tmp_path, monkeypatch, step):
    """The old pair survives a kill before circuit.json is replaced; the new one after it."""
    _circuit(target_loss=0.1).save(tmp_path, {"x": torch.zeros(2)})
    if step == "sidecar":
        monkeypatch.setattr(circuit_file, "atomic_write_bytes", _die)
    elif step == "json":
        monkeypatch.setattr(circuit_file, "write_json", _die)
    else:
        monkeypatch.setattr(Path, "unlink", _die)
    with pytest.raises(Killed):
        _circuit(target_loss=0.2).save(tmp_path, {"x": torch.ones(2)})
    monkeypatch.undo()
    circuit = load_circuit(tmp_path)
    tensors = load_circuit_tensors(circuit)  # checks the sidecar's hash: a matching pair
    expected = (0.1, torch.zeros(2)) if step != "cleanup" else (0.2, torch.ones(2))
    assert circuit.target_loss == expected[0] and torch.equal(tensors["x"], expected[1])
    # At most one sidecar that nothing names is left behind, never one that is missing.
    assert len(_sidecars(tmp_path)) == (1 if step == "sidecar" else 2)


WRITER = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from tests.circuits.test_circuit_file import _circuit
out = Path({out!r})
for i in range(10**9):
    _circuit(target_loss=float(i)).save(out, {{"i": torch.full((64,), float(i))}})
    Path({ready!r}).write_text(str(i))
"""


@pytest.mark.slow
def test_a_real_sigkill_during_saves_never_mixes_a_pair(tmp_path):
    """A process saving the same circuit in a loop is killed at a few moments; each time the
    json and the sidecar belong together (the tensor holds the json's target loss)."""
    out, ready = tmp_path / "c", tmp_path / "ready"
    script = WRITER.format(tests=str(REPO), out=str(out), ready=str(ready))
    for delay in (0.0, 0.013, 0.031):
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", script])
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():  # wait for a first complete pair
                assert proc.poll() is None and time.monotonic() < deadline, "writer stopped"
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        circuit = load_circuit(out)
        tensors = load_circuit_tensors(circuit)
        assert torch.equal(tensors["i"], torch.full((64,), circuit.target_loss))


def test_a_sidecar_that_is_not_the_jsons_partner_is_refused(tmp_path):
    path = _circuit().save(tmp_path / "a", {"x": torch.zeros(2)})
    other = _circuit().save(tmp_path / "b", {"x": torch.ones(2)})
    mine = path.parent / json.loads(path.read_text())["tensors"]["file"]
    mine.write_bytes((other.parent / _sidecars(other.parent)[0]).read_bytes())
    load_circuit(path)  # the json alone is fine
    with pytest.raises(CircuitError, match="does not match its circuit.json") as err:
        load_circuit_tensors(path)
    assert "\n" not in str(err.value)


def test_a_missing_sidecar_is_an_error(tmp_path):
    path = _circuit().save(tmp_path, {"x": torch.zeros(2)})
    (tmp_path / _sidecars(tmp_path)[0]).unlink()
    with pytest.raises(CircuitError, match="sidecar .* is missing"):
        load_circuit(path)


def _set(path: str, value):
    """A mutation of the document: set the value at a dotted path ('nodes.0.name')."""

    def mutate(doc):
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


def _drop(key: str):
    return lambda doc: doc.pop(key)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set("format_version", 1), "format version 1"),
        (_drop("format"), "not a sparsecircuits circuit"),
        (_drop("edges"), "missing edges"),
        (_drop("tensors"), "missing tensors"),
        (_set("ablation_kind", "mean"), "unknown key 'ablation_kind'"),
        (_set("nodes", {"a": 1}), "nodes must be a list, not"),
        (_set("target_loss", "0.1"), 'target_loss must be a finite number, not "0.1"'),
        (_set("target_loss", True), "target_loss must be a finite number"),
        (_set("task.name", ""), "task.name must be a non-empty string"),
        (_set("task.candidates", [{"id": "7", "text": "'"}]), r"task.candidates\[0\].id must"),
        (_set("model.content_hash", "xyz"), "model.content_hash must be 64 lowercase hex"),
        (_set("ablation", "half"), "ablation must be one of mean, zero, resample"),
        (_set("calibration.scale", None), "calibration.scale must be a finite number, not null"),
        (_set("calibration.scale", float("nan")), "calibration.scale must be a finite number"),
        (_set("calibration.shift", float("inf")), "calibration.shift must be a finite number"),
        (_set("calibration.scale", 1e300), "calibration.scale must be positive and at most"),
        (_set("calibration.scale", -1.0), "calibration.scale must be positive"),
        (_drop("calibration"), "missing calibration"),
        (_set("nodes.0.name", "0.mlp.act_in.\u00b2"), "is not a node name like"),
        (_set("nodes.0.name", "0.mlp.act_in.01"), "is not a node name like"),
        (_set("nodes.0.name", "0.mlp.q.1"), "is not a node name like"),
        (_set("nodes.0.name", "0.mlp.act_in"), "is not a node name like"),
        (_set("nodes.0.name", 3), r"nodes\[0\].name must be a string"),
        (_set("nodes.1.kind", "read"), r'nodes\[1\].kind is "read" but the name'),
        (_set("nodes.1.index", 5), r"nodes\[1\].index is 5 but the name"),
        (_set("nodes.1.mask_score", None), r"nodes\[1\].mask_score must be a finite number"),
        (_set("nodes.2", _node("0.mlp.act_in.1")), "listed twice"),
        (_set("edges", [["0.mlp.act_in.1", "0.mlp.post_act.9", 0.5]]), "not both nodes of"),
        (_set("edges", [["0.mlp.act_in.1", "0.mlp.post_act.4"]]), r"\[source, target, weight\]"),
        (_set("edges.0.2", "big"), r"edges\[0\] weight must be a finite number"),
        (_set("embed_edges.0.0", "resid.1"), "not both token and channel names"),
        (_set("residual_links", [["0.mlp.act_in.1"]]), r"\[write node, read node\]"),
        (_set("losses.val", "low"), "losses.val must be a finite number or null"),
        (_set("tensors", {"file": "../x.safetensors", "sha256": "0" * 64}), "tensors.file must"),
        (_set("tensors", {"file": "/etc/x.safetensors", "sha256": "0" * 64}), "tensors.file must"),
        (_set("tensors", {"file": "x.safetensors", "sha256": "0"}), "tensors.sha256 must"),
        (_set("tensors", "circuit.safetensors"), "tensors must be an object or null"),
    ],
)
def test_bad_files_are_one_line_circuit_errors(tmp_path, mutate, message):
    path = _circuit().save(tmp_path)
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))  # json.dumps writes NaN / Infinity, which json.loads reads
    with pytest.raises(CircuitError, match=message) as err:
        load_circuit(path)
    assert "\n" not in str(err.value)


def test_truncated_missing_or_huge_files(tmp_path, monkeypatch):
    path = _circuit().save(tmp_path)
    text = path.read_text()
    path.write_text(text[:50])
    assert is_circuit_file(path)  # still found when scanning, so it is listed with its error
    with pytest.raises(CircuitError, match="corrupt"):
        load_circuit(path)
    with pytest.raises(CircuitError, match="does not exist"):
        load_circuit(tmp_path / "nope.json")
    path.write_text(text.replace('"target_loss": 0.15', '"target_loss": ' + "1" * 5000))
    with pytest.raises(CircuitError, match="corrupt: Exceeds the limit"):
        load_circuit(path)  # Python refuses to parse an integer this long
    path.write_text(text)
    monkeypatch.setattr(circuit_file, "MAX_BYTES", 100)
    with pytest.raises(CircuitError, match="too large"):
        load_circuit(path)


def test_a_sidecar_linked_from_elsewhere_is_not_the_circuits(tmp_path):
    path = _circuit().save(tmp_path / "c", {"x": torch.zeros(2)})
    name = _sidecars(path.parent)[0]
    (tmp_path / name).write_bytes((path.parent / name).read_bytes())
    (path.parent / name).unlink()
    (path.parent / name).symlink_to(tmp_path / name)
    with pytest.raises(CircuitError, match="resolves outside the circuit's directory"):
        load_circuit(path)


def test_an_output_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    with pytest.raises(CircuitError, match="cannot write the circuit to"):
        _circuit().save(tmp_path / "taken", {"x": torch.zeros(2)})
    assert (tmp_path / "taken").read_text() == "not a directory"


def test_the_writer_never_writes_a_file_the_reader_refuses(tmp_path):
    bad = _circuit(nodes=[_node("0.mlp.act_in.1", kind="read")])
    with pytest.raises(CircuitError, match="refusing to write an invalid circuit"):
        bad.save(tmp_path / "out", {"x": torch.zeros(2)})
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_one_node_kind_vocabulary():
    assert [
        node_kind(x) for x in ("3.attn.act_in", "0.attn.k", "1.mlp.post_act", "2.mlp.resid_delta")
    ] == ["resid_read", "k", "neuron", "resid_write"]
    assert set(NODE_KINDS) == {"resid_read", "resid_write", "neuron", "q", "k", "v"}


def test_node_names_parse_only_in_their_canonical_form():
    assert parse_node_name("12.attn.v.460") == ("12.attn.v", 460)
    for bad in (
        "0.mlp.post_act.²",
        "0.mlp.post_act.٣",
        "00.mlp.post_act.1",
        "0.mlp.k.1",
        "0.mlp.post_act.-1",
        " 0.mlp.post_act.1",
        "0.mlp.post_act.1\n",
        None,
    ):
        assert parse_node_name(bad) is None, bad
