"""The latent page in real headless Chromium: live (`serve --sae`) and in a report (`--sae`).

Chromium and Playwright as in test_browser.py (whose browser fixtures are reused); screenshots
go to test-artifacts/. The live viewer reads an explanation cache written with the real
`ExplanationCache` (test_explanations.explain_latents).
"""

from __future__ import annotations

import pytest

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.explanations import ExplanationSource
from sparsecircuits.viewer.latents import LatentSource
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import write_report
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.test_browser import browser, page, serving  # noqa: F401 - fixtures
from tests.viewer.test_explanations import explain_latents, ranked
from tests.viewer.test_latents import train_tiny_sae

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def sae_dir(tiny_checkpoint, tmp_path_factory):
    return train_tiny_sae(tiny_checkpoint, tmp_path_factory.mktemp("sae") / "tiny-sae")


@pytest.fixture(scope="module")
def explained(sae_dir, tiny_checkpoint, tmp_path_factory):
    """The explain cache the viewer reads, and what it holds: {latent: result}."""
    cache = tmp_path_factory.mktemp("explanations")
    return cache, explain_latents(cache, sae_dir, load_checkpoint(tiny_checkpoint).content_hash)


@pytest.fixture(scope="module")
def server(artifacts, sae_dir, explained):
    ws = Workspace(artifacts, StatsConfig(windows=8, top_k=5))
    app = create_app(ws, latents=LatentSource([sae_dir]),
                     explanations=ExplanationSource(explained[0]))  # fmt: skip
    with serving(app) as url:
        yield url


def _busiest_latent(server_url: str) -> int:
    """A latent that fires on the corpus windows (from the data, not a fixed index)."""
    import json
    import urllib.request

    best, best_active = 0, -1.0
    for latent in range(0, 128, 8):
        with urllib.request.urlopen(f"{server_url}api/latent?sae=tiny-sae&latent={latent}") as r:
            active = json.load(r)["corpus"]["active_fraction"]
        if active > best_active:
            best, best_active = latent, active
    return best


def test_live_latent_page_renders_snippets_and_intervenes(server, page, test_artifacts):  # noqa: F811
    latent = _busiest_latent(server)
    page.goto(f"{server}?sae=tiny-sae&latent={latent}")
    page.wait_for_selector("#latent-body .snippet", timeout=60_000)
    assert page.locator("#latent-panel").is_visible()
    assert page.locator("#latent-body .node-name").inner_text() == f"latent {latent}"
    snippets = page.locator("#latent-body .snippets").first.locator(".snippet")
    assert snippets.count() >= 1
    focus = snippets.first.locator(".tok.focus")
    coloured = focus.evaluate("e => getComputedStyle(e).backgroundColor")
    assert coloured not in ("rgba(0, 0, 0, 0)", "transparent")  # the activating token is coloured
    assert page.locator("#latent-body svg.density line.this-latent").count() == 1
    assert page.locator("#latent-body .updown li").count() >= 2  # promoted / suppressed tokens
    page.locator("#latent-body .latent-actions button[data-op='ablate']").click()
    page.wait_for_selector("#intervene-result table.metrics", timeout=60_000)
    assert page.locator("#intervene-result tr.metric-task-loss td.intervened").inner_text()
    page.locator("#latent-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(test_artifacts / "viewer-latent.png"), full_page=False)
    assert not page.errors, page.errors


def test_live_latent_search_lists_latents_by_explanation_and_opens_one(
    server, explained, page, test_artifacts  # noqa: F811
):
    results = explained[1]
    want = ranked(results, "closing quote")
    assert want
    page.goto(server)
    page.wait_for_selector("#latent-panel:not([hidden])")
    page.locator("#latent-search").fill("Closing QUOTE")
    page.wait_for_selector("#latent-search-results .search-hit-item")
    head = page.locator("#latent-search-results .search-head").inner_text()
    assert head.startswith(f"{len(want)} latents whose explanation contains"), head
    hits = page.locator("#latent-search-results .search-hit-item")
    assert [int(h) for h in hits.evaluate_all("es => es.map(e => e.dataset.latent)")] == want
    assert "fires just before a closing quote" in hits.first.inner_text()
    hits.first.click()
    page.wait_for_selector("#latent-body .snippet", timeout=60_000)
    assert page.locator("#latent-body .node-name").inner_text() == f"latent {want[0]}"
    assert results[want[0]]["explanation"] in page.locator("#latent-body .explanation").inner_text()
    page.locator("#latent-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(test_artifacts / "viewer-latent-search.png"))
    page.locator("#latent-search").fill("no such phrase")
    page.wait_for_function(
        "() => !document.querySelector('#latent-search-results .search-hit-item')")
    assert page.locator("#latent-search-results .search-head").inner_text().startswith("0 latents")
    assert not page.errors, page.errors


def test_report_with_sae_shows_latent_pages_from_a_file(handmade, sae_dir, page, tmp_path,  # noqa: F811
                                                        test_artifacts):
    out = write_report(handmade, tmp_path / "r.html", stats=StatsConfig(windows=8, top_k=4),
                       n=16, sae=sae_dir)
    page.goto(out.as_uri())
    page.wait_for_selector("#latent-body .snippet", timeout=30_000)
    picks = page.locator("#latent-list button")
    assert picks.count() >= 2
    assert page.locator("#latent-search").count() == 0  # the search is live only
    picks.nth(1).click()
    shown = page.locator("#latent-body .node-name").inner_text()
    assert shown == f"latent {picks.nth(1).inner_text()}"
    page.locator("#latent-body .latent-actions button[data-op='ablate']").click()
    page.wait_for_selector("#intervene-result table.metrics")
    page.locator("#latent-panel").scroll_into_view_if_needed()
    page.screenshot(path=str(test_artifacts / "report-latent.png"))
    assert not page.errors, page.errors
