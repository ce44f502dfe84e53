"""End to end in real headless Chromium: the live viewer and the exported report.

Chromium is Debian's package at /usr/bin/chromium (scripts/install_browser.sh installs it),
driven by Playwright's Python API; nothing is downloaded. Pages are 1280x800 (a laptop);
screenshots go to test-artifacts/. Layout is checked on a big circuit (`big_circuit`, 200+
nodes and ~1000 edges of the tiny model, written by the real circuit writer): the pruner's
circuits of the tiny model are too small to crowd anything.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import write_report
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.big_circuit import big_circuit
from tests.viewer.conftest import TASK

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


@contextmanager
def serving(app):
    """The app on a free 127.0.0.1 port, in a background thread."""
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(workspace):
    with serving(create_app(workspace)) as url:
        yield url


BIG = "circuits/big/circuit.json"


@pytest.fixture(scope="module")
def big_server(tiny_checkpoint, tmp_path_factory):
    """An artifacts directory of its own (the shared one's listing is tested elsewhere) with
    the tiny model and a big circuit of it."""
    root = tmp_path_factory.mktemp("big-artifacts")
    shutil.copytree(tiny_checkpoint, root / "runs" / "tiny" / "checkpoint")
    big_circuit(root / "runs" / "tiny" / "checkpoint", TASK, root / "circuits" / "big")
    with serving(create_app(Workspace(root, StatsConfig(windows=8, top_k=4)))) as url:
        yield url


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
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    page.close()


def rect(page, selector: str) -> dict[str, float]:
    """The element's box on screen (for SVG too, which has no offsetWidth)."""
    return page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; }")


def assert_graph_fits_its_pane(page):
    pane, drawn = rect(page, "#graph"), rect(page, "#graph g.viewport")
    assert drawn["right"] - drawn["left"] > 100, drawn  # something was drawn
    assert pane["left"] <= drawn["left"] and drawn["right"] <= pane["right"], (pane, drawn)
    assert pane["top"] <= drawn["top"] and drawn["bottom"] <= pane["bottom"], (pane, drawn)
    assert pane["right"] <= 1280 and pane["bottom"] <= 800  # and the pane is on screen


def hover_edge(page, selector: str = "#graph g.edge-edge:not(.filtered) .edge-hit") -> str:
    """Move the mouse onto a point of an edge's path that no node covers and return the
    tooltip's text. Candidate points are tried in turn until the tooltip shows an edge: which
    points a node covers depends on the layout, and so on the circuit the tiny model gives on
    this machine (the centre of the path's box may also be off the curve)."""
    points = page.locator(selector).evaluate_all("""paths => {
        const out = [];
        for (const p of paths) for (const t of [0.5, 0.35, 0.65, 0.2, 0.8]) {
            const q = p.getPointAtLength(p.getTotalLength() * t), m = p.getScreenCTM();
            const x = q.x * m.a + q.y * m.c + m.e, y = q.x * m.b + q.y * m.d + m.f;
            const hit = document.elementFromPoint(x, y);
            if (hit && hit.closest("g.edge") === p.parentNode) out.push([x, y]);
        }
        return out; }""")
    assert points, "no edge can be pointed at"
    text = ""
    for point in points[:20]:
        page.mouse.move(0, 0)
        page.mouse.move(*point)
        text = page.locator("#tooltip").inner_text()
        if "weight" in text:
            break
    return text


def assert_in_viewport(page, selector: str):
    box = rect(page, selector)
    assert 0 <= box["top"] and box["bottom"] <= 800, (selector, box)


def scale(page) -> float:
    return float(page.locator("#graph svg").get_attribute("data-scale"))


def strongest_write(workspace, pruned_id) -> str:
    """The circuit's last-layer residual write whose zero-ablation moves the task loss most."""
    client = TestClient(create_app(workspace), base_url="http://127.0.0.1")
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
    assert_graph_fits_its_pane(page)
    # The graph: one element per circuit node, bands from embedding to unembedding.
    n_nodes = len(workspace.circuit(pruned_id).nodes)
    assert page.locator("#graph g.node:not(.node-logit)").count() == n_nodes
    bands = page.locator("#graph .band-label").all_text_contents()  # SVG: no innerText
    assert bands[0] == "unembedding" and bands[-1] == "embedding"
    assert {"layer 0", "layer 1"} <= set(bands)
    assert "weight" in hover_edge(page)
    page.screenshot(path=str(test_artifacts / "viewer-graph.png"))

    # Click a node: its panel shows snippets coloured per token, a histogram, both classes.
    page.locator(f'#graph g.node[data-node="{node}"]').click()
    assert not page.locator("#tooltip").is_visible()  # a click does not leave it on neighbours
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
    assert_in_viewport(page, "#intervene-result table.metrics")  # scrolled to, not below
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
    assert_in_viewport(page, "#intervene-result table.metrics")
    # What the report cannot do is said where the interventions are, and stays said.
    assert "sparsecircuits serve" in page.locator("#intervene-panel .static-note").inner_text()
    assert "sparsecircuits serve" in page.locator("#topbar").inner_text()
    assert page.locator("#text-panel").count() == 0  # live-only panels are not shown
    assert page.locator("#circuit-summary").inner_text().count("val") >= 1  # losses shown
    page.screenshot(path=str(test_artifacts / "report.png"))
    assert requests == [out.resolve().as_uri()]  # the page itself, nothing else
    assert page.errors == []


def test_a_big_circuit_is_fitted_zoomable_pannable_and_readable(big_server, page, test_artifacts):
    page.goto(f"{big_server}?circuit={BIG}")
    page.wait_for_selector("#graph svg g.node")
    n_nodes = page.locator("#graph g.node:not(.node-logit)").count()
    assert n_nodes > 150
    # Fitted on load: every node is on screen inside the pane.
    assert_graph_fits_its_pane(page)
    fitted = scale(page)
    assert fitted < 1
    page.screenshot(path=str(test_artifacts / "big-circuit-fit.png"))

    # A readable default: only the strongest edges are drawn, "all" draws every one.
    edges = page.locator("#graph g.edge-edge")
    hidden = page.locator("#graph g.edge-edge.filtered").count()
    assert edges.count() > 500 and 0 < hidden < edges.count()
    page.select_option("#graph .edge-limit", "all")
    assert page.locator("#graph g.edge-edge.filtered").count() == 0
    page.select_option("#graph .edge-limit", index=0)

    # q/k/v channels sit together per head: along each q/k/v row, a head is one run.
    heads = page.locator("#graph g.node[data-head]").evaluate_all("""els => els.map(e => ({
        row: e.dataset.node.split('.')[0], head: +e.dataset.head,
        x: e.getBoundingClientRect().left}))""")
    assert heads
    for layer in {h["row"] for h in heads}:
        order = [h["head"] for h in sorted(heads, key=lambda h: h["x"]) if h["row"] == layer]
        runs = [head for i, head in enumerate(order) if i == 0 or head != order[i - 1]]
        assert len(runs) == len(set(runs)), (layer, order)
    assert page.locator("#graph .head-group").count() >= 2

    # Hover: the node's edges are highlighted (hidden ones included), the rest dimmed.
    name = page.locator("#graph g.edge-edge.filtered").first.get_attribute("data-source")
    page.locator(f'#graph g.node[data-node="{name}"]').hover()
    mine = page.locator(f'#graph g.edge[data-source="{name}"], #graph g.edge[data-target="{name}"]')
    assert mine.count() >= 2
    assert all("hl" in c for c in mine.evaluate_all("els => els.map(e => e.className.baseVal)"))
    opacity = """els => els.map(e => getComputedStyle(e).display === 'none' ? -1 :
        +getComputedStyle(e.querySelector('.edge-line')).opacity)"""
    assert min(mine.evaluate_all(opacity)) == 1  # drawn (not -1) and at full strength
    others = page.locator(f'#graph g.edge-edge:not(.filtered):not([data-source="{name}"])'
                          f':not([data-target="{name}"])').evaluate_all(opacity)
    assert others and -1 < max(others) < 0.2
    page.screenshot(path=str(test_artifacts / "big-circuit-hover.png"))
    page.mouse.move(5, 5)  # off the graph: nothing dimmed any more
    assert page.locator("#graph svg.focus").count() == 0

    # Wheel zoom at the pointer, drag to pan, "fit" to come back.
    pane = rect(page, "#graph")
    cx, cy = (pane["left"] + pane["right"]) / 2, (pane["top"] + pane["bottom"]) / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -600)
    page.wait_for_function(f"() => +document.querySelector('#graph svg').dataset.scale > {fitted}")
    zoomed = scale(page)
    assert zoomed > 1.5 * fitted
    before = rect(page, "#graph g.viewport")
    page.mouse.move(pane["left"] + 60, pane["bottom"] - 60)
    page.mouse.down()
    page.mouse.move(pane["left"] + 160, pane["bottom"] - 110, steps=8)
    page.mouse.up()
    after = rect(page, "#graph g.viewport")
    assert after["left"] - before["left"] == pytest.approx(100, abs=2)
    assert after["top"] - before["top"] == pytest.approx(-50, abs=2)
    assert scale(page) == zoomed  # panning does not zoom
    page.screenshot(path=str(test_artifacts / "big-circuit-zoomed.png"))
    page.locator("#graph .zoom-fit").click()
    assert scale(page) == pytest.approx(fitted)
    assert_graph_fits_its_pane(page)

    # The header names what the file's keys mean (the main ones first, the rest under "more").
    page.locator("#circuit-summary details summary").click()
    summary = page.locator("#circuit-summary").inner_text()
    assert "full model, val" in summary
    assert "circuit alone, test (uncalibrated)" in summary
    assert "test_sufficiency_uncalibrated" not in summary
    # Whole texts where the top bar has no room: on hover.
    picker = page.locator("#pick-circuit")
    assert picker.get_attribute("title").startswith(BIG)
    assert page.errors == []
