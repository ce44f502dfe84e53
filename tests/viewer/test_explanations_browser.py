"""Explanations in real headless Chromium at 1280x800: tooltip, panel, label toggle, search.

Chromium and Playwright as in test_browser.py (whose fixtures are reused). The explanation
cache is written with the real `ExplanationCache`; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json

import pytest

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.explanations import ExplanationSource
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import write_report
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.test_browser import browser, page, serving  # noqa: F401 - fixtures
from tests.viewer.test_explanations import ok, write_cache

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHRASES = [
    ("fires on the token `'` and inside parentheses, strongest just after a string's opening "
     "quote", 0.91),
    ("fires inside a double-quoted string", 0.84),
    ("(negative side) fires on line breaks, strongest in a def header", 0.58),
    ("fires on `self`, strongest at the start of a line", 0.62),
]


def explain_some(cache_dir, checkpoint, nodes: list[str]) -> dict[str, str]:
    """Cached explanations for the first nodes (the rest have none): {node: text}."""
    chosen = dict(zip(nodes, PHRASES, strict=False))
    write_cache(cache_dir, load_checkpoint(checkpoint).content_hash,
                {node: ok(text, det) for node, (text, det) in chosen.items()})  # fmt: skip
    return {node: text for node, (text, _) in chosen.items()}


@pytest.fixture(scope="module")
def explained(artifacts, pruned_id, tiny_checkpoint, tmp_path_factory):
    nodes = [n["name"] for n in json.loads((artifacts / pruned_id).read_text())["nodes"]]
    cache = tmp_path_factory.mktemp("explanations")
    return cache, explain_some(cache, tiny_checkpoint, nodes), nodes


@pytest.fixture(scope="module")
def server(artifacts, explained):
    ws = Workspace(artifacts, StatsConfig(windows=8, top_k=4))
    with serving(create_app(ws, explanations=ExplanationSource(explained[0]))) as url:
        yield url


def label(pg, node: str) -> str:
    """A node's label as read: its lines (tspans) joined by spaces."""
    return pg.locator(f'#graph g.node[data-node="{node}"] text.node-label').evaluate(
        "e => { const lines = [...e.querySelectorAll('tspan')].map(t => t.textContent);"
        " return lines.length ? lines.join(' ') : e.textContent; }")


def check_tooltip_and_panel(pg, node: str, text: str):
    pg.locator(f'#graph g.node[data-node="{node}"] .node-shape').hover()
    tip = pg.locator("#tooltip").inner_text()
    assert " ".join(tip.split()).count(" ".join(text.split())) == 1, tip  # wrapped, whole
    assert "detection 0.91" in tip
    pg.locator(f'#graph g.node[data-node="{node}"]').click()
    pg.wait_for_selector("#node-body .explanation")
    shown = pg.locator("#node-body .explanation").inner_text()
    assert "fires on the token ' and inside parentheses" in shown  # `'` shown as code
    assert "detection 0.91" in shown and "offline" in shown


def test_live_viewer_shows_toggles_and_searches_explanations(server, explained, pruned_id,
                                                             page, test_artifacts):  # noqa: F811
    _, texts, nodes = explained
    first, second = list(texts)[:2]
    plain = nodes[-1]  # no explanation
    page.goto(f"{server}?circuit={pruned_id}")
    page.wait_for_selector("#graph svg g.node")
    check_tooltip_and_panel(page, first, texts[first])
    page.screenshot(path=str(test_artifacts / "viewer-explanation-panel.png"))

    # A node without an explanation: no explanation line, no toolbar clutter about it.
    page.locator(f'#graph g.node[data-node="{plain}"]').click()
    page.wait_for_function(f"() => document.querySelector('#node-body .node-name')"
                           f" && document.querySelector('#node-body .node-name').textContent"
                           f" === {json.dumps(plain)} && document.querySelector('#node-body .stats')")
    assert page.locator("#node-body .explanation").count() == 0

    # Label toggle: explained nodes show their phrase's main clause, the rest their names.
    assert label(page, first) == first
    page.select_option("#graph .label-mode", "explanations")
    assert label(page, first).startswith("on the token `'`")
    assert label(page, second) == "inside a double-quoted string"
    assert label(page, plain) == plain
    page.mouse.move(5, 790)  # off the graph: a hovered node would dim the others
    page.screenshot(path=str(test_artifacts / "viewer-explanation-labels.png"))
    page.select_option("#graph .label-mode", "names")
    assert label(page, first) == first

    # Search: the matching node is highlighted and listed; clicking the entry opens it.
    page.fill("#graph .explain-search", "DOUBLE-quoted")
    hits = page.locator("#graph g.node.search-hit")
    assert hits.count() == 1 and hits.first.get_attribute("data-node") == second
    assert page.locator("#graph .search-hit-item").count() == 1
    dim = page.locator(f'#graph g.node[data-node="{first}"]').evaluate(
        "e => +getComputedStyle(e).opacity")
    assert dim < 0.5  # the rest fade
    page.mouse.move(5, 790)
    page.screenshot(path=str(test_artifacts / "viewer-explanation-search.png"))
    page.locator("#graph .search-hit-item").first.click()
    page.wait_for_function(f"() => document.querySelector('#node-body .node-name')"
                           f" && document.querySelector('#node-body .node-name').textContent"
                           f" === {json.dumps(second)}")
    page.fill("#graph .explain-search", "")
    assert page.locator("#graph g.node.search-hit").count() == 0
    assert not page.locator("#graph .search-results").is_visible()
    assert page.errors == []


def test_report_shows_explanations_from_a_file(handmade, tiny_checkpoint, tmp_path, page,  # noqa: F811
                                               test_artifacts):  # fmt: skip
    nodes = [n["name"] for n in json.loads(handmade.read_text())["nodes"]]
    texts = explain_some(tmp_path / "cache", tiny_checkpoint, nodes)
    out = write_report(handmade, test_artifacts / "report-explanations.html",
                       stats=StatsConfig(windows=8, top_k=4), n=8,
                       explanations=ExplanationSource(tmp_path / "cache"))  # fmt: skip
    page.goto(out.resolve().as_uri())
    page.wait_for_selector("#graph svg g.node")
    first = list(texts)[0]
    check_tooltip_and_panel(page, first, texts[first])
    page.select_option("#graph .label-mode", "explanations")
    assert label(page, first).startswith("on the token")
    page.fill("#graph .explain-search", "line breaks")
    assert [h.get_attribute("data-node") for h in
            page.locator("#graph g.node.search-hit").all()] == [list(texts)[2]]  # fmt: skip
    page.mouse.move(5, 790)
    page.screenshot(path=str(test_artifacts / "report-explanations.png"))
    assert page.errors == []


def test_no_explanations_no_controls(artifacts, pruned_id, tmp_path, page):  # noqa: F811
    ws = Workspace(artifacts, StatsConfig(windows=8, top_k=4))
    with serving(create_app(ws, explanations=ExplanationSource(tmp_path))) as url:
        page.goto(f"{url}?circuit={pruned_id}")
        page.wait_for_selector("#graph svg g.node")
        assert page.locator("#graph .label-mode, #graph .explain-search").count() == 0
        assert page.errors == []
