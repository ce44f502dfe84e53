"""The interpretability experiment's summaries: table rows and figure from results."""

from sparsecircuits.autointerp.report import summarize
from sparsecircuits.experiments.interpretability import figure, table


def _results(scores):
    return [{"unit": f"0.mlp.post_act.{i}", "status": "ok", "detection": s, "correlation": 0.5}
            for i, s in enumerate(scores)] + [{"unit": "x", "status": "inactive"}]  # fmt: skip


def test_summary_counts_units_and_the_fraction_at_or_above_the_bar():
    s = summarize(_results([0.5, 0.8, 0.9, 0.6]))
    assert (s["units"], s["scored"], s["inactive"], s["failed"]) == (5, 4, 1, 0)
    assert s["fraction_good"] == 0.5 and s["median_detection"] == 0.7


def test_table_and_figure(tmp_path):
    groups = [{"model": m, "location": "0.mlp.post_act", **summarize(_results(scores))}
              for m, scores in (("sparse", [0.9, 0.86]), ("dense", [0.62, 0.54]))]  # fmt: skip
    doc = {"good": 0.8, "groups": groups}
    text = table(doc)
    assert "| sparse | 0.mlp.post_act | 3 | 2 | 0.88 | 1.00 | 0.50 |" in text
    assert "| dense | 0.mlp.post_act | 3 | 2 | 0.58 | 0.00 | 0.50 |" in text
    path = figure(doc, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
