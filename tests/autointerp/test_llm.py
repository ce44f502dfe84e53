"""The LLM explainer against a real local HTTP server speaking the chat-completions API.

The server answers from a script: faults first (HTTP 429, a reply slower than the client's
timeout, garbage), then well-formed answers built from the prompt it received. Nothing of our
code is mocked: the client, the prompts and the parsers run for real.
"""

import json
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparsecircuits.autointerp.corpus import ExplainConfig
from sparsecircuits.autointerp.llm import (
    DETECT_SYSTEM,
    EXPLAIN_SYSTEM,
    ChatClient,
    LLMFailure,
    LLMSettings,
    parse_explanation,
)
from sparsecircuits.autointerp.run import explain_request

KEY = "sk-test-SECRET-4242"
KEY_ENV = "SPARSECIRCUITS_TEST_LLM_KEY"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the http.server name)
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                    "body": body})  # fmt: skip
            fault = server.faults.pop(0) if server.faults else None
        if fault == "429":
            self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
        elif fault == "slow":
            time.sleep(server.slow_s)
            self._send(200, json.dumps(_reply("Explanation: too late")).encode())
        elif fault == "garbage":
            self._send(200, json.dumps(_reply("I would rather not say.")).encode())
        elif fault == "html":
            self._send(200, b"<html>oops</html>")
        else:
            self._send(200, json.dumps(_reply(_answer(body["messages"]))).encode())

    def _send(self, status, data, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (the timeout case)

    def log_message(self, *args):
        pass


def _reply(content: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


def _answer(messages) -> str:
    system, user = messages[0]["content"], messages[1]["content"]
    if system == EXPLAIN_SYSTEM:
        return "Looking at the marks...\nExplanation: fires on opening quotes"
    n = len(re.findall(r"^\d+\. ", user, flags=re.MULTILINE))
    labels = [k % 2 for k in range(n)] if system == DETECT_SYSTEM else [1] * n
    return f"Here you go: {json.dumps(labels)}"


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.requests, srv.faults, srv.lock, srv.slow_s = [], [], threading.Lock(), 3.0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _settings(srv, **kw) -> LLMSettings:
    kw = {"timeout": 1.0, "retries": 3, "backoff": 0.01, **kw}
    return LLMSettings(url=f"http://127.0.0.1:{srv.server_port}/v1", model="scripted",
                       key_env=KEY_ENV, **kw)  # fmt: skip


def test_retries_a_429_a_timeout_and_garbage_then_parses(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    server.faults[:] = ["429", "slow", "garbage"]
    waits = []
    client = ChatClient(_settings(server), sleep=waits.append)
    try:
        text = client.ask([{"role": "system", "content": EXPLAIN_SYSTEM},
                           {"role": "user", "content": "Spans:\n1. x"}], parse_explanation)  # fmt: skip
    finally:
        client.close()
    assert text == "fires on opening quotes"
    assert len(server.requests) == 4 and len(waits) == 3
    assert waits[0] == 0.0  # the 429's Retry-After
    assert waits[2] == 2 * waits[1] > 0  # exponential backoff
    assert all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_gives_up_with_a_message_that_names_the_fault_but_not_the_key(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    server.faults[:] = ["html", "html"]
    client = ChatClient(_settings(server, retries=1), sleep=lambda s: None)
    with pytest.raises(LLMFailure, match="unparseable reply") as err:
        client.ask([{"role": "user", "content": "hi"}], parse_explanation)
    client.close()
    assert KEY not in str(err.value) and len(server.requests) == 2


def test_an_unreachable_endpoint_is_a_failure_not_a_crash():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(LLMSettings(url=f"http://127.0.0.1:{port}", model="m", retries=1,
                                    backoff=0.0), sleep=lambda s: None)  # fmt: skip
    with pytest.raises(LLMFailure, match="connection failed"):
        client.ask([{"role": "user", "content": "hi"}], parse_explanation)
    client.close()


def test_a_run_records_failures_resumes_and_never_writes_the_key(
    server, monkeypatch, tmp_path, tiny_run, caplog
):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    cfg = ExplainConfig(windows=8, span=8, contexts=4, min_count=2)
    units = ["0.resid_post.0", "0.resid_post.1", "0.resid_post.2"]
    server.faults[:] = ["garbage", "429"]  # both attempts at the first request fail
    results, cache_file = explain_request(tiny_run, nodes=units, cfg=cfg,
                                          llm=_settings(server, retries=1), cache_dir=tmp_path)  # fmt: skip
    status = [results[u]["status"] for u in units]
    assert status.count("failed") == 1 and "ok" in status, status
    failed = units[status.index("failed")]
    assert "HTTP 429" in results[failed]["error"]
    ok = [r for r in results.values() if r["status"] == "ok"]
    assert all(r["explanation"] == "fires on opening quotes" for r in ok)
    assert all(0.0 <= r["detection"] <= 1.0 and r["fuzzing"] is not None for r in ok)
    doc = json.loads(cache_file.read_text())
    assert doc["units"][failed]["status"] == "failed"  # recorded, not lost

    before = len(server.requests)
    again, _ = explain_request(tiny_run, nodes=units, cfg=cfg, llm=_settings(server),
                               cache_dir=tmp_path)  # fmt: skip
    asked = server.requests[before:]
    assert len(asked) == 3  # explain, detect, fuzz for the failed unit only
    assert again[failed]["status"] == "ok"
    assert all(again[u] == results[u] for u in units if u != failed)

    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert KEY not in written and KEY_ENV in written  # the variable's name, never its value
    assert KEY not in caplog.text
