"""The single-file HTML report: self-contained, with the data the static front end needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import (
    STATIC_DIR,
    _script_json,
    is_report,
    report_target,
    write_report,
)

URL = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')<]*")


@pytest.fixture(scope="module")
def report(handmade, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "circuit.html"
    return write_report(handmade, out, stats=StatsConfig(windows=8, top_k=4), n=16)


def embedded_data(html: str) -> dict:
    m = re.search(r'<script id="sc-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def test_report_is_one_self_contained_file(report):
    html = report.read_text()
    assert 'src="static/' not in html and 'href="static/' not in html
    assert set(URL.findall(html)) <= {"http://www.w3.org/2000/svg"}
    assert "<style>" in html and "SC.renderGraph" in html and "initStatic" in html


def test_report_holds_graph_panels_and_ablations_for_every_node(report, handmade):
    data = embedded_data(report.read_text())
    names = [n["name"] for n in data["view"]["graph"]["nodes"]]
    assert names == [n["name"] for n in json.loads(handmade.read_text())["nodes"]]
    assert set(data["nodes"]) == set(names)
    assert all(p["corpus"]["histogram"]["total"] == p["corpus"]["windows"] * 64
               and 1 <= p["corpus"]["windows"] <= 8 for p in data["nodes"].values())
    assert set(data["baseline"]) == {"model", "circuit"}
    for mode in ("model", "circuit"):
        base = data["baseline"][mode]
        assert len(base["examples"]) == 16
        for name in names:
            for op in ("ablate_mean", "ablate_zero"):
                r = data["ablations"][mode][name][op]
                assert r["baseline"] == base["baseline"]
                assert r["interventions"] == [{"node": name, "op": op, "value": None}]


def test_report_of_a_circuit_whose_model_is_gone(handmade, tmp_path):
    doc = json.loads(handmade.read_text())
    doc["model"].update(path=str(tmp_path / "gone"), content_hash="0" * 64)
    lost = tmp_path / "lost.json"
    lost.write_text(json.dumps(doc))
    with pytest.raises(SparseCircuitsError, match="pass --model"):
        write_report(lost, tmp_path / "x.html")


# --- the output: only a missing file or an earlier report is replaced (checked before work) ---
def lost_circuit(handmade: Path, tmp_path: Path) -> Path:
    """The handmade circuit, naming a model that does not exist: any work on it fails."""
    doc = json.loads(handmade.read_text())
    doc["model"].update(path=str(tmp_path / "gone"), content_hash="0" * 64)
    lost = tmp_path / "lost" / "circuit.json"
    lost.parent.mkdir()
    lost.write_text(json.dumps(doc))
    return lost


@pytest.mark.parametrize("target", ["circuit", "config", "html", "dir-in-the-way"])
def test_report_refuses_to_overwrite_anything_but_a_report(handmade, tiny_checkpoint, tmp_path,
                                                           target):
    circuit = lost_circuit(handmade, tmp_path)
    foreign = tmp_path / "notes.html"
    foreign.write_text("<!doctype html><p>my notes</p>")
    (tmp_path / "d" / "lost.html").mkdir(parents=True)
    out = {"circuit": circuit, "config": tiny_checkpoint / "config.json", "html": foreign,
           "dir-in-the-way": tmp_path / "d"}[target]
    before = {p: p.read_bytes() for p in (circuit, tiny_checkpoint / "config.json", foreign)}
    # The circuit's model is gone: an error about the output proves it was checked first.
    with pytest.raises(SparseCircuitsError, match="refusing to overwrite|circuit file itself|"
                                                  "is a directory"):
        write_report(circuit, out)
    assert {p: p.read_bytes() for p in before} == before


def test_report_under_a_file_fails_before_the_work(handmade, tmp_path):
    circuit = lost_circuit(handmade, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SparseCircuitsError, match="is not a directory"):
        write_report(circuit, tmp_path / "file" / "r.html")


def test_report_into_a_directory_and_over_an_earlier_report(report, tmp_path):
    """`-o DIR` writes DIR/<circuit name>.html; an earlier report (its marker) is replaced."""
    earlier = tmp_path / "handmade.html"
    earlier.write_text(report.read_text()[:5000])  # a report's head carries the marker
    assert is_report(earlier) and not is_report(report.parent / "missing.html")
    assert report_target(Path("runs/x/circuits/handmade/circuit.json"), tmp_path) == earlier
    assert report_target("elsewhere/mine.json", tmp_path) == tmp_path / "mine.html"


def test_a_marker_inside_the_data_does_not_make_a_report(tmp_path):
    doc = tmp_path / "c.json"
    doc.write_text(json.dumps({"note": '<!doctype html><meta name="generator" '
                                       'content="sparsecircuits report">'}))
    assert not is_report(doc)


# --- embedded data: the HTML parser must not see the end of the element, or a comment -------
NASTY = "<!--<script> </script x & \u2028 \u2029 <\\/"  # no "-->" to end the comment


def nasty_report(handmade: Path, tmp_path: Path) -> Path:
    """The report of a circuit named `<!--<script>` whose hyperparameters hold NASTY."""
    doc = json.loads(handmade.read_text())
    doc["hyperparameters"] = {"note": NASTY}
    circuit = tmp_path / "<!--<script>" / "circuit.json"
    circuit.parent.mkdir()
    circuit.write_text(json.dumps(doc))
    return write_report(circuit, tmp_path / "r.html", stats=StatsConfig(windows=2, top_k=2), n=4)


def test_strings_that_open_comments_or_scripts_round_trip(handmade, tmp_path):
    nasty = NASTY
    html = nasty_report(handmade, tmp_path).read_text()
    start = html.index('<script id="sc-data" type="application/json">')
    body = html[start:].split(">", 1)[1]
    text, rest = body.split("</script>", 1)
    assert "<" not in text  # nothing in the element the HTML tokenizer could act on
    data = json.loads(text)
    assert data["view"]["circuit"]["name"] == "<!--<script>"
    assert data["view"]["circuit"]["summary"]["hyperparameters.note"] == nasty
    # Every inline script (one per script of the front end) still follows as its own element.
    scripts = (STATIC_DIR / "index.html").read_text().count('<script src="static/')
    assert scripts >= 2 and rest.count("<script>") == scripts and "initStatic" in rest


def test_non_finite_numbers_are_embedded_as_null():
    assert json.loads(_script_json({"a": [float("nan"), float("inf"), 1.5]})) == \
        {"a": [None, None, 1.5]}


@pytest.mark.browser
@pytest.mark.slow
def test_a_report_with_comment_openers_renders_in_chromium(handmade, tmp_path):
    """The same report in the real browser: the page runs, the data is intact."""
    from playwright.sync_api import sync_playwright

    from tests.viewer.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: run scripts/install_browser.sh")
    out = nasty_report(handmade, tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(out.resolve().as_uri())
            page.wait_for_selector("#graph svg g.node")
            note = page.evaluate("() => JSON.parse(document.getElementById('sc-data')"
                                 ".textContent).view.circuit.summary['hyperparameters.note']")
            assert note == NASTY and page.title().startswith("<!--<script>")
            assert errors == []
        finally:
            browser.close()
