"""The single-file HTML report: self-contained, with the data the static front end needs."""

from __future__ import annotations

import json
import re

import pytest

from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import write_report

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
    assert names == json.loads(handmade.read_text())["nodes"]
    assert set(data["nodes"]) == set(names)
    assert all(p["corpus"]["histogram"]["total"] == 8 * 64 for p in data["nodes"].values())
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
    doc["model"] = {"path": str(tmp_path / "gone"), "content_hash": "0" * 64}
    lost = tmp_path / "lost.json"
    lost.write_text(json.dumps(doc))
    with pytest.raises(SparseCircuitsError, match="pass --model"):
        write_report(lost, tmp_path / "x.html")
