"""The viewer stays inside its artifacts directory and one bad file cannot take it down.

Each test drives the real app (httpx's TestClient, or a real uvicorn server on a socket) over
an artifacts directory of its own, with real symlinks. "Nothing outside was read" is observed,
not assumed: a Python audit hook records every file the process opens or lists while a
request runs, and no such path may resolve into the directory outside the root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from sparsecircuits.model.locations import parse_node
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.guards import MAX_BODY_BYTES
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.conftest import TASK
from tests.viewer.handmade import handmade_circuit

HANDMADE = "runs/tiny/circuits/handmade/circuit.json"
PRUNED = "circuits/p/circuit.json"

# --- observing file access ---------------------------------------------------------------------
_seen: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _seen is not None and event in ("open", "os.listdir", "os.scandir") and args:
        if isinstance(args[0], str | bytes | os.PathLike):
            _seen.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed; this one only records inside `reads()`


@contextmanager
def reads():
    """Every path opened or listed by this process (any thread) inside the block."""
    global _seen
    _seen = seen = []
    try:
        yield seen
    finally:
        _seen = None


def touched(paths: list[str], outside: Path) -> list[str]:
    """The paths that are, once links are followed, in `outside`."""
    out = os.path.realpath(outside)
    return [p for p in paths if os.path.realpath(p) == out or
            os.path.realpath(p).startswith(out + os.sep)]


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tiny_checkpoint, pruned, tmp_path_factory) -> dict[str, Path]:
    """A handmade circuit written for a copy of the tiny checkpoint, and the pruned circuit."""
    base = tmp_path_factory.mktemp("sources")
    ckpt = base / "runs" / "tiny" / "checkpoint"
    shutil.copytree(tiny_checkpoint, ckpt)
    handmade_circuit(ckpt, TASK, base / "runs" / "tiny" / "circuits" / "handmade")
    return {"base": base, "pruned_dir": pruned.parent}


@pytest.fixture
def outside(tmp_path, sources) -> Path:
    """A directory beside the root holding a real checkpoint and a real circuit."""
    out = tmp_path / "outside"
    shutil.copytree(sources["base"] / "runs" / "tiny", out / "run")
    shutil.copytree(sources["pruned_dir"], out / "pruned")
    return out


@pytest.fixture
def root(tmp_path, sources) -> Path:
    """This test's artifacts directory: the tiny run with its handmade circuit, and a copy of
    the pruned circuit (its model is found by content hash)."""
    r = tmp_path / "artifacts"
    shutil.copytree(sources["base"], r)
    shutil.copytree(sources["pruned_dir"], r / "circuits" / "p")
    return r


def client_for(root: Path, hosts: tuple[str, ...] = ()) -> TestClient:
    ws = Workspace(root, StatsConfig(windows=4))
    return TestClient(create_app(ws, hosts), base_url="http://127.0.0.1",
                      raise_server_exceptions=False)


def listed(client: TestClient) -> dict[str, dict]:
    r = client.get("/api/artifacts")
    assert r.status_code == 200, r.text
    return {c["id"]: c for c in r.json()["circuits"]}


def edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# --- F16: a *.json link out of the root ------------------------------------------------------------
def test_a_json_link_out_of_the_root_is_listed_unreadable_and_never_opened(root, outside):
    (root / "link.json").symlink_to(outside / "pruned" / "circuit.json")
    client = client_for(root)
    with reads() as seen:
        circuits = listed(client)
        one = client.get("/api/circuit", params={"id": "link.json"})
    assert touched(seen, outside) == []
    assert "outside the artifacts directory" in circuits["link.json"]["error"]
    assert "task" in circuits[HANDMADE]  # the rest still lists
    assert one.status_code == 403
    assert str(outside) not in one.text and str(outside) not in json.dumps(circuits)
    assert client.get("/api/circuit", params={"id": HANDMADE}).status_code == 200


def test_a_checkpoint_with_a_link_out_of_the_root_is_not_loaded(root, outside):
    weights = root / "runs" / "tiny" / "checkpoint" / "model.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "run" / "checkpoint" / "model.safetensors")
    client = client_for(root)
    with reads() as seen:
        models = client.get("/api/artifacts").json()["models"]
        r = client.get("/api/node", params={"model": "runs/tiny", "node": "0.mlp.post_act.1"})
    assert touched(seen, outside) == []
    assert models == [{"id": "runs/tiny", "error": models[0]["error"]}]
    assert "links outside" in models[0]["error"]
    assert r.status_code == 404 and str(outside) not in r.text


# --- F17: a circuit naming a sidecar outside the root -------------------------------------------------
@pytest.mark.parametrize("where", ["absolute", "parent", "link"])
def test_a_sidecar_outside_the_root_is_never_loaded(root, outside, where):
    circuit = root / PRUNED
    sidecar_name = json.loads(circuit.read_text())["tensors"]["file"]
    if where == "link":  # a well-named sidecar that is a link to an identical file outside
        (circuit.parent / sidecar_name).unlink()
        (circuit.parent / sidecar_name).symlink_to(outside / "pruned" / sidecar_name)
    else:
        target = (str(outside / "pruned" / sidecar_name) if where == "absolute"
                  else f"../../../outside/pruned/{sidecar_name}")
        edit_json(circuit, lambda d: d["tensors"].update(file=target))
    client = client_for(root)
    with reads() as seen:
        circuits = listed(client)
        r = client.post("/api/intervene", json={
            "circuit": PRUNED, "n": 4, "mode": "circuit",
            "interventions": [{"node": json.loads(circuit.read_text())["nodes"][0]["name"],
                               "op": "ablate_mean"}]})
    assert touched(seen, outside) == []
    assert "error" in circuits[PRUNED] and str(outside) not in circuits[PRUNED]["error"]
    assert r.status_code in (400, 403), r.text
    assert str(outside) not in r.text


# --- F18: a circuit naming a model outside the root ------------------------------------------------
def test_a_model_path_outside_the_root_is_never_opened(root, outside):
    def elsewhere(doc):
        doc["model"]["path"] = str(outside / "run" / "checkpoint")
        doc["model"]["content_hash"] = "0" * 64  # and no model inside has its weights

    edit_json(root / PRUNED, elsewhere)  # (no run directory above it either)
    client = client_for(root)
    with reads() as seen:
        r = client.get("/api/circuit", params={"id": PRUNED})
    assert touched(seen, outside) == []
    assert r.status_code == 404 and "cannot find the model" in r.json()["error"]
    assert str(outside) not in r.text


# --- F19: a node name with a non-ASCII digit --------------------------------------------------------
@pytest.mark.parametrize("name", ["0.mlp.post_act.²", "0.mlp.post_act.٣", "0.mlp.post_act.07",
                                  "0.mlp.post_act.-1", "0.mlp.post_act. 1"])
def test_only_canonical_ascii_node_names_parse(name):
    with pytest.raises(Exception, match="not a node name") as info:
        parse_node(name)
    assert type(info.value).__name__ == "SparseCircuitsError"


def test_a_circuit_with_a_superscript_node_is_listed_unreadable(root):
    edit_json(root / HANDMADE, lambda d: d["nodes"].append(
        dict(d["nodes"][0], name="0.mlp.post_act.²")))
    client = client_for(root)
    circuits = listed(client)
    assert "error" in circuits[HANDMADE] and "task" in circuits[PRUNED]
    r = client.get("/api/circuit", params={"id": HANDMADE})
    assert r.status_code == 400, r.text
    r = client.get("/api/node", params={"model": "runs/tiny", "node": "0.mlp.post_act.²"})
    assert r.status_code == 400 and "not a node name" in r.json()["error"]


# --- F10: symlink loops --------------------------------------------------------------------------
def test_symlink_loops_are_listed_and_answered_not_500(root):
    (root / "loop.json").symlink_to(root / "loop.json")
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    (root / "here").symlink_to(root, target_is_directory=True)
    client = client_for(root)
    circuits = listed(client)
    assert "symlink loop" in circuits["loop.json"]["error"]
    assert "task" in circuits[HANDMADE]
    for params in ({"id": "loop.json"}, {"id": "a/circuit.json"}, {"id": "here/" * 50 + "x"}):
        r = client.get("/api/circuit", params=params)
        assert r.status_code in (403, 404), (params, r.text)
    r = client.get("/api/node", params={"model": "a", "node": "0.mlp.post_act.1"})
    assert r.status_code == 404, r.text


# --- F22: the Host header ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1", 200), ("127.0.0.1:8765", 200), ("localhost:1", 200), ("LocalHost", 200),
        ("[::1]:8765", 200), ("[::1]", 200), ("viewer.lan:8765", 200),
        ("evil.example", 400), ("evil.example:8765", 400), ("127.0.0.1.evil.example", 400),
        ("localhost.evil.example", 400), ("[::2]:8765", 400), ("", 400), ("::1", 400),
        ("127.0.0.1:80:80", 400),
    ],
)
def test_only_loopback_and_configured_hosts_are_answered(root, host, status):
    client = client_for(root, hosts=("viewer.lan",))
    r = client.get("/api/artifacts", headers={"host": host})
    assert r.status_code == status, r.text
    if status == 400:
        assert "Host" in r.json()["error"]


# --- F20: the request-body limit -------------------------------------------------------------------
def test_a_body_over_the_limit_is_413(root):
    client = client_for(root)
    big = json.dumps({"model": "runs/tiny", "node": "0.mlp.post_act.1",
                      "text": "x" * (MAX_BODY_BYTES + 1)})
    r = client.post("/api/tokens", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    # The same without a Content-Length (chunked): refused once the limit is passed.
    chunks = (b"x" * 65536 for _ in range(MAX_BODY_BYTES // 65536 + 2))
    r = client.post("/api/tokens", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413


@contextmanager
def real_server(root: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Workspace(root)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_request(port: int, head: str, body: bytes = b"") -> str:
    """Send a request as bytes and return the status line and headers of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode("latin-1")


def test_a_real_server_refuses_a_300_mb_body_before_it_arrives_and_a_foreign_host(root):
    with real_server(root) as port:
        # Only the headers are sent: the answer cannot wait for (or buffer) the 300 MB.
        head = (f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {300 * 2**20}\r\n\r\n")
        assert raw_request(port, head).startswith("HTTP/1.1 413")
        evil = f"GET /api/artifacts HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n"
        assert raw_request(port, evil).startswith("HTTP/1.1 400")
        ok = f"GET /api/artifacts HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"
        assert raw_request(port, ok).startswith("HTTP/1.1 200")


# --- F21: values out of range in request bodies -----------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 99999999999999999999999}, "seed"),
        ({"seed": -1}, "seed"),
        ({"temperature": "NaN"}, "temperature"),
        ({"temperature": 1e308 * 10}, "temperature"),
        ({"interventions": [{"node": "0.mlp.post_act.1", "op": "clamp", "value": "Infinity"}]},
         "value"),
    ],
)
def test_steer_values_out_of_range_are_422(root, change, field):
    body = {"model": "runs/tiny", "prompt": "x", "tokens": 1, **change}
    # Python writes inf as Infinity and the strings stand for JSON's non-standard literals.
    text = json.dumps(body).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    r = client_for(root).post("/api/steer", content=text,
                              headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]


def test_a_non_finite_result_is_answered_with_nulls_not_500(root):
    """Calibration as large as the reader accepts makes the logits overflow: the answer holds
    null where a number has no JSON spelling."""
    edit_json(root / PRUNED, lambda d: d["calibration"].update(scale=3e38))
    r = client_for(root).post("/api/intervene", json={"circuit": PRUNED, "n": 4,
                                                      "mode": "circuit"})
    assert r.status_code == 200, r.text
    assert r.json()["baseline"]["task_loss"] is None
