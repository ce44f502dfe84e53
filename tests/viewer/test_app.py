"""The viewer's JSON API on a real tiny model and real circuits, errors included."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from fastapi.testclient import TestClient

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.model.hooks import Recorder
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.node_stats import CorpusActivations, StatsConfig, val_tokens
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.conftest import TASK


@pytest.fixture(scope="module")
def client(artifacts, pruned, handmade):
    ws = Workspace(artifacts, StatsConfig(windows=16))
    with TestClient(create_app(ws), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def graph(client, pruned_id):
    r = client.get("/api/circuit", params={"id": pruned_id})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def neuron(graph, tiny_checkpoint) -> str:
    """A neuron of the circuit chosen from the data, not by position or index (which neurons a
    tiny model uses depends on its training run): of those with an edge out, the one firing
    highest on the node panel's corpus windows, so its panel has snippets and clamping it
    moves the loss."""
    loaded = load_checkpoint(tiny_checkpoint)
    cfg = StatsConfig(windows=16)
    corpus = CorpusActivations(loaded.model, val_tokens(loaded, cfg.windows), cfg)
    writers = {e["source"] for e in graph["graph"]["edges"]}
    names = [n["name"] for n in graph["graph"]["nodes"] if n["kind"] == "neuron"]

    def peak(name: str) -> float:
        location, index = name.rsplit(".", 1)
        return float(corpus.location(location)[:, cfg.min_context :, int(index)].max())

    return max((n for n in names if n in writers), key=peak)


def test_artifacts_lists_the_model_and_both_circuits(client, pruned_id):
    body = client.get("/api/artifacts").json()
    assert [m["id"] for m in body["models"]] == ["runs/tiny"]
    assert body["models"][0]["n_layer"] == 2
    ids = {c["id"]: c for c in body["circuits"]}
    assert set(ids) == {pruned_id, "runs/tiny/circuits/handmade/circuit.json"}
    assert ids[pruned_id]["task"] == TASK and ids[pruned_id]["nodes"] >= 3


def test_loaded_models_are_cached_until_their_weights_change(artifacts, tiny_checkpoint):
    import os

    ws = Workspace(artifacts)
    first = ws.model("runs/tiny")
    assert ws.model("runs/tiny/checkpoint") is first
    weights = tiny_checkpoint / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        assert ws.model("runs/tiny") is not first
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_circuit_graph_places_every_kept_node_and_only_edges_between_them(graph, pruned):
    doc = json.loads(pruned.read_text())
    g = graph["graph"]
    names = {n["name"] for n in g["nodes"]}
    assert names == {n["name"] for n in doc["nodes"]}
    assert len(g["edges"]) == len(doc["edges"]) == doc["counts"]["edges"]
    assert all(e["source"] in names and e["target"] in names for e in g["edges"])
    for n in g["nodes"]:
        assert n["row"] in g["rows"] and 0 <= n["layer"] < g["n_layer"]
        assert n["name"].startswith(f"{n['layer']}.")
    # The top band holds the task's two candidates; token edges only touch circuit nodes.
    assert sorted(t["token"] for t in g["unembed_tokens"]) == ["\")", "')"]
    ends = {t["id"] for t in g["embed_tokens"] + g["unembed_tokens"]}
    assert all({e["source"], e["target"]} <= names | ends for e in g["token_edges"])
    assert graph["circuit"]["task"] == TASK and graph["model"] == "runs/tiny"
    assert graph["warnings"] == []


def test_node_panel_has_snippets_histogram_and_classes(client, pruned_id, neuron):
    node = neuron
    r = client.get("/api/node", params={"circuit": pruned_id, "node": node})
    assert r.status_code == 200, r.text
    p = r.json()
    c = p["corpus"]
    assert c["top"], "a neuron with no positive activation on 16 windows"
    for s in c["top"]:
        assert len(s["tokens"]) == len(s["acts"]) and s["acts"][s["focus"]] == s["value"] > 0
    values = [s["value"] for s in c["top"]]
    assert values == sorted(values, reverse=True) and max(values) <= c["scale"]
    h = c["histogram"]
    # Up to the 16 windows asked for: fewer when the val shard is shorter than 16 windows.
    assert 1 <= c["windows"] <= 16
    assert sum(h["counts"]) + h["zeros"] == h["total"] == c["tokens"] == c["windows"] * 64
    classes = p["task"]["classes"]
    assert [k["name"] for k in classes] == ["double quote", "single quote"]
    assert sum(len(k["values"]) for k in classes) == p["task"]["n"] == 32
    assert all(ex["tokens"] and ex["correct"] in ("')", '")') for k in classes
               for ex in k["examples"])
    assert p["logit_effect"]["direct"] is False
    assert p["circuit_meta"]["kind"] == "neuron"
    assert p["ablation_mean_source"].startswith("circuit sidecar")


def test_direct_logit_effect_of_a_residual_write(client, tiny_checkpoint):
    r = client.get("/api/node", params={"model": "runs/tiny", "node": "1.mlp.resid_delta.3",
                                        "task": TASK})
    le = r.json()["logit_effect"]
    assert le["direct"] is True and len(le["up"]) == len(le["down"]) == 10
    model = load_checkpoint(tiny_checkpoint).model
    with torch.no_grad():
        column = model.unembed.weight[:, 3] * model.final_norm.weight[3]
    assert math.isclose(le["up"][0]["value"], float(column.max()), rel_tol=1e-3)
    assert math.isclose(le["down"][0]["value"], float(column.min()), rel_tol=1e-3)
    assert len(le["candidates"]) == 2


def test_tokens_view_matches_a_recorded_forward(client, tiny_checkpoint):
    """Per-token activations for typed text equal a plain forward pass with a Recorder."""
    text = 'print("hello")\nx = \'abc\''
    r = client.post("/api/tokens", json={"model": "runs/tiny", "node": "0.mlp.post_act.5",
                                         "text": text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "".join(body["tokens"]) == text
    loaded = load_checkpoint(tiny_checkpoint)
    ids = loaded.tokenizer.encode(text).ids
    rec = Recorder(["0.mlp.post_act"])
    with torch.no_grad():
        loaded.model(torch.tensor([ids]), rec.hooks)
    expected = rec.acts["0.mlp.post_act"][0, :, 5]
    assert torch.allclose(torch.tensor(body["acts"]), expected, atol=1e-3, rtol=1e-3)


def test_a_neutral_intervention_changes_nothing_and_a_clamp_changes_the_loss(client, neuron):
    node = neuron
    same = client.post("/api/intervene", json={
        "model": "runs/tiny", "task": TASK, "n": 16,
        "interventions": [{"node": node, "op": "scale", "value": 1.0}]}).json()
    assert same["baseline"] == same["intervened"]
    assert len(same["examples"]) == len(same["baseline"]["p_correct"]) == 16
    big = client.post("/api/intervene", json={
        "model": "runs/tiny", "task": TASK, "n": 16,
        "interventions": [{"node": node, "op": "clamp", "value": 50.0}]}).json()
    assert big["intervened"]["task_loss"] != pytest.approx(big["baseline"]["task_loss"], abs=1e-3)
    assert big["intervened"]["p_correct"] != big["baseline"]["p_correct"]


def test_circuit_mode_reproduces_the_pruners_calibrated_val_loss(client, pruned_id, pruned):
    doc = json.loads(pruned.read_text())
    r = client.post("/api/intervene", json={"circuit": pruned_id, "n": 32, "mode": "circuit"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mean_source"].startswith("circuit sidecar")
    # The same 32 val examples, the same means and calibration as the pruner's val loss.
    assert body["baseline"]["task_loss"] == pytest.approx(
        doc["losses"]["val_after_calibration"], abs=1e-4)


def test_mean_ablation_uses_the_circuits_means(client, pruned_id, neuron, pruned):
    node = neuron
    value = next(n["ablation_value"] for n in json.loads(pruned.read_text())["nodes"]
                 if n["name"] == node)
    mean = client.post("/api/intervene", json={
        "circuit": pruned_id, "n": 8,
        "interventions": [{"node": node, "op": "ablate_mean"}]}).json()
    clamp = client.post("/api/intervene", json={
        "circuit": pruned_id, "n": 8,
        "interventions": [{"node": node, "op": "clamp", "value": value}]}).json()
    assert mean["intervened"] == clamp["intervened"]


def test_steer_generates_with_and_without(client):
    r = client.post("/api/steer", json={
        "model": "runs/tiny", "prompt": 'print("hi', "tokens": 4,
        "interventions": [{"node": "0.mlp.post_act.5", "op": "scale", "value": -1}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plain"].startswith('print("hi') and body["steered"].startswith('print("hi')


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"model": "../../etc", "node": "0.mlp.post_act.1"}, 403, "outside"),
        ({"model": "/etc", "node": "0.mlp.post_act.1"}, 403, "relative"),
        ({"model": "runs/../../x", "node": "0.mlp.post_act.1"}, 403, "outside"),
        ({"model": "runs/nope", "node": "0.mlp.post_act.1"}, 404, "does not exist"),
        ({"model": "runs", "node": "0.mlp.post_act.1"}, 404, "not a model"),
        ({"model": "runs/tiny", "node": "7.mlp.post_act.1"}, 404, "unknown node"),
        ({"model": "runs/tiny", "node": "0.mlp.post_act.100000"}, 404, "unknown node"),
        ({"model": "runs/tiny", "node": "0.mlp.post_act"}, 400, "not a node name"),
        ({"model": "runs/tiny", "node": "x" * 300}, 422, "node"),
        ({"node": "0.mlp.post_act.1"}, 400, "name a model"),
        ({"model": "runs/tiny", "node": "0.mlp.post_act.1", "task": "nope"}, 200, None),
        ({"circuit": "runs/tiny/checkpoint/config.json", "node": "0.mlp.post_act.1"}, 400,
         "not a sparsecircuits circuit"),
    ],
)
def test_node_route_errors_are_json(client, params, status, message):
    r = client.get("/api/node", params=params)
    assert r.status_code == status, r.text
    if message is not None:
        assert message in r.json()["error"]


def test_unknown_task_is_reported_in_the_panel_not_as_a_crash(client):
    r = client.get("/api/node", params={"model": "runs/tiny", "node": "0.mlp.post_act.1",
                                        "task": "nope"})
    assert "unknown task" in r.json()["task_error"]


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("/api/tokens", {"model": "runs/tiny", "node": "0.mlp.post_act.1", "text": 5}, 422, "text"),
        ("/api/tokens", {"model": "runs/tiny", "node": "0.mlp.post_act.1", "text": ""}, 422, "text"),
        ("/api/tokens", {"model": "runs/tiny", "node": "0.mlp.post_act.1",
                         "text": "x" * 20_001}, 422, "text"),
        ("/api/tokens", {"model": "runs/tiny", "node": "0.mlp.post_act.1", "text": "a",
                         "extra": 1}, 422, "extra"),
        ("/api/tokens", {"model": "../x", "node": "0.mlp.post_act.1", "text": "a"}, 403, "outside"),
        ("/api/tokens", {"model": "runs/tiny", "node": "0.mlp.post_act.1", "text": "a\ud800"},
         422, "valid string"),
        ("/api/steer", {"model": "runs/tiny", "prompt": "\udfff"}, 422, "valid string"),
        ("/api/intervene", {"model": "runs/tiny", "task": TASK,
                            "interventions": [{"node": "0.mlp.post_act.1", "op": "explode"}]},
         400, "unknown op"),
        ("/api/intervene", {"model": "runs/tiny", "task": TASK,
                            "interventions": [{"node": "0.mlp.post_act.1", "op": "clamp"}]},
         400, "numeric value"),
        ("/api/intervene", {"model": "runs/tiny", "task": TASK,
                            "interventions": [{"node": "0.mlp.nope.1", "op": "ablate_zero"}]},
         404, "unknown node"),
        ("/api/intervene", {"model": "runs/tiny", "interventions": []}, 400, "task"),
        ("/api/intervene", {"model": "runs/tiny", "task": "/etc/tasks.jsonl"}, 403, "relative"),
        ("/api/intervene", {"model": "runs/tiny", "task": "../t.jsonl"}, 403, "outside"),
        ("/api/intervene", {"model": "runs/tiny", "task": TASK, "n": 0}, 422, "n"),
        ("/api/intervene", {"model": "runs/tiny", "task": TASK, "mode": "circuit"}, 400,
         "needs a circuit"),
        ("/api/steer", {"model": "runs/tiny", "prompt": ""}, 422, "prompt"),
        ("/api/steer", {"model": "runs/tiny", "prompt": "x", "tokens": 10_000}, 422, "tokens"),
    ],
)
def test_post_route_errors_are_json(client, route, body, status, message):
    # json.dumps escapes a lone surrogate as \\ud800, as a browser's JSON.stringify does.
    r = client.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_malformed_json_and_unknown_routes_are_json(client):
    r = client.post("/api/tokens", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_a_symlink_out_of_the_artifacts_directory_is_refused(client, artifacts, tmp_path):
    link = artifacts / "escape"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        r = client.get("/api/circuit", params={"id": "escape/circuit.json"})
        assert r.status_code == 403
    finally:
        link.unlink()


def test_front_end_is_served_without_external_references(client):
    page = client.get("/")
    assert page.status_code == 200 and "static/viewer.js" in page.text
    for asset in ("style.css", "graph.js", "viewer.js"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200
        # The SVG namespace is a name, not a fetch; any other URL would be a network access.
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", r.text))
        assert urls <= {"http://www.w3.org/2000/svg"}, urls
