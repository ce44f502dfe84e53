"""End to end in real headless Chromium: the live viewer and the exported report.

Chromium is Debian's package at /usr/bin/chromium (scripts/install_browser.sh installs it),
driven by Playwright's Python API; nothing is downloaded. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import write_report
from sparsecircuits.viewer.workspace import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# Without these, Chromium on a machine without network stalls on background fetches.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(artifacts, pruned, handmade) -> Workspace:
    return Workspace(artifacts, StatsConfig(windows=16))


@pytest.fixture(scope="module")
def server(workspace):
    """The app on a free 127.0.0.1 port, in a background thread, for the module's tests."""
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(workspace), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/install_browser.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    page.close()


def strongest_write(workspace, pruned_id) -> str:
    """The circuit's last-layer residual write whose zero-ablation moves the task loss most."""
    client = TestClient(create_app(workspace))
    graph = client.get("/api/circuit", params={"id": pruned_id}).json()["graph"]
    last = graph["n_layer"] - 1
    writes = [n["name"] for n in graph["nodes"] if n["kind"] == "resid_write"
              and n["layer"] == last]
    assert writes, "the pruned circuit has no write in the last layer"

    def effect(node):
        r = client.post("/api/intervene", json={
            "circuit": pruned_id, "interventions": [{"node": node, "op": "ablate_zero"}]}).json()
        return abs(r["intervened"]["task_loss"] - r["baseline"]["task_loss"])

    return max(writes, key=effect)


def test_live_viewer_graph_node_panel_ablation_and_text(
    server, page, workspace, pruned_id, test_artifacts
):
    node = strongest_write(workspace, pruned_id)
    page.goto(f"{server}?circuit={pruned_id}")
    page.wait_for_selector("#graph svg g.node")
    # The graph: one element per circuit node, bands from embedding to unembedding.
    n_nodes = len(workspace.circuit(pruned_id).nodes)
    assert page.locator("#graph g.node:not(.node-logit)").count() == n_nodes
    bands = page.locator("#graph .band-label").all_text_contents()  # SVG: no innerText
    assert bands[0] == "unembedding" and bands[-1] == "embedding"
    assert {"layer 0", "layer 1"} <= set(bands)
    page.locator("#graph g.edge-edge .edge-hit").first.hover(force=True)
    assert "weight" in page.locator("#tooltip").inner_text()
    page.screenshot(path=str(test_artifacts / "viewer-graph.png"))

    # Click a node: its panel shows snippets coloured per token, a histogram, both classes.
    page.locator(f'#graph g.node[data-node="{node}"]').click()
    page.wait_for_selector("#node-body .snippet")
    assert page.locator("#node-body .node-name").inner_text() == node
    assert page.locator("#node-body .snippet").count() >= 1
    styles = page.locator("#node-body .snippet .tok").evaluate_all(
        "els => els.map(e => e.style.background)")
    assert any(s and s != "transparent" for s in styles)
    assert page.locator("#node-body svg.hist rect").count() >= 1
    assert page.locator("#node-body .class-col").count() == 2
    assert "pushes up" in page.locator("#node-body").inner_text()  # a write: logit effect
    page.screenshot(path=str(test_artifacts / "viewer-node.png"))

    # Ablate it: the task loss changes on the task's examples.
    page.wait_for_selector("#intervene-result .metric-task-loss")
    page.locator("#node-body button[data-op=ablate_zero]").click()
    page.wait_for_selector("#intervene-list .chip")
    page.wait_for_function(
        "() => { const r = document.querySelector('#intervene-result');"
        " return !r.classList.contains('busy') && r.querySelector('.metric-task-loss'); }")
    base = page.locator("#intervene-result .metric-task-loss .baseline").inner_text()
    after = page.locator("#intervene-result .metric-task-loss .intervened").inner_text()
    assert base != after, (base, after)
    assert "task loss" in page.locator("#node-effect").inner_text()
    page.screenshot(path=str(test_artifacts / "viewer-ablation.png"))

    # Per-token view of typed text, for the selected node.
    page.fill("#text-input", "print('a')\nprint(\"b\")")
    page.click("#text-run")
    page.wait_for_selector("#text-result .tok")
    assert page.locator("#text-result .textview").inner_text().replace("\u21b5", "") == \
        "print('a')\nprint(\"b\")"

    # A node the model does not have: a message in the panel, the page keeps working.
    page.fill("#node-input", "0.mlp.post_act.99999")
    page.click("#node-form button")
    page.wait_for_selector("#node-body .error")
    assert "unknown node" in page.locator("#node-body .error").inner_text()
    assert page.errors == []


def test_exported_report_opens_from_a_file_url_without_network(
    page, handmade, test_artifacts
):
    out = write_report(handmade, test_artifacts / "report-tiny.html",
                       stats=StatsConfig(windows=8, top_k=4), n=16)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("#graph svg g.node")
    first = page.locator("#graph g.node-neuron").first
    name = first.get_attribute("data-node")
    first.click()
    page.wait_for_selector("#node-body .snippet")
    assert page.locator("#node-body .node-name").inner_text() == name
    page.locator("#node-body button[data-op=ablate_mean]").click()
    page.wait_for_selector("#intervene-result .metric-task-loss .intervened")
    assert "mean-ablate" in page.locator("#intervene-list").inner_text()
    assert page.locator("#circuit-summary").inner_text().count("val") >= 1  # losses shown
    page.screenshot(path=str(test_artifacts / "report.png"))
    assert requests == [out.resolve().as_uri()]  # the page itself, nothing else
    assert page.errors == []
