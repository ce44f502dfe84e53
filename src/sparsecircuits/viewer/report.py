"""The single-file HTML report of a circuit: opens from file:// with no server and no network.

The live front end (static/index.html + style.css + graph.js + viewer.js) is inlined together
with a JSON document holding everything it would otherwise ask the API for: the circuit header
and graph, a node panel for every drawn node, each node's mean- and zero-ablation result on the
task, and the unablated baseline. The front end sees the JSON and runs in static mode.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sparsecircuits.checkpoint import resolve
from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.viewer.circuit_file import read_circuit
from sparsecircuits.viewer.interventions import Intervention
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.panels import circuit_view, intervention_result, node_panel
from sparsecircuits.viewer.workspace import find_circuit_model, hash_warnings, load_handle

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CSS_TAG = '<link rel="stylesheet" href="static/style.css">'
GRAPH_TAG = '<script src="static/graph.js"></script>'
VIEWER_TAG = '<script src="static/viewer.js"></script>'


def report_data(
    circuit_path: str | Path,
    model: str | Path | None = None,
    stats: StatsConfig | None = None,
    n: int = 32,
) -> dict[str, Any]:
    """Everything the static front end shows, computed once."""
    circuit = read_circuit(circuit_path)
    if model is not None:
        ckpt = resolve(model)
        warnings = hash_warnings(circuit, ckpt)
    else:
        ckpt, warnings = find_circuit_model(circuit, root=None)
    handle = load_handle(ckpt, str(ckpt), stats or StatsConfig())
    view = circuit_view(handle, circuit, circuit.path.name, n, warnings)
    drawn = [node["name"] for node in view["graph"]["nodes"]]
    panels = {name: node_panel(handle, name, circuit.task, n, circuit) for name in drawn}
    baseline: dict[str, Any] = {}
    ablations: dict[str, dict[str, dict[str, Any]]] = {}
    modes = ["model"] + (["circuit"] if circuit.ablation in (None, "mean", "zero") else [])
    try:
        for mode in modes:
            baseline[mode] = intervention_result(handle, circuit.task, [], n, circuit, mode)
    except TaskError as exc:
        baseline = {}
        view["warnings"].append(f"no interventions in this report: {exc}")
    for mode in baseline:
        ablations[mode] = {}
        for name in drawn:
            ablations[mode][name] = {}
            for op in ("ablate_mean", "ablate_zero"):
                r = intervention_result(handle, circuit.task, [Intervention(name, op)], n, circuit,
                                        mode, baseline[mode]["baseline"])
                ablations[mode][name][op] = r
    return {"view": view, "nodes": panels, "baseline": baseline, "ablations": ablations}


def _script_json(data: dict[str, Any]) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to JSON.parse.
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _inline(name: str, closing: str) -> str:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    if closing in text.lower():
        raise SparseCircuitsError(f"static/{name} contains {closing!r} and cannot be inlined")
    return text


def render_html(data: dict[str, Any]) -> str:
    """index.html with the CSS, the scripts and the data inlined."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for tag in (CSS_TAG, GRAPH_TAG, VIEWER_TAG):
        if tag not in page:  # the front end and this module must agree
            raise RuntimeError(f"static/index.html lost the tag {tag}")
    title = f"{data['view']['circuit']['name']} · sparsecircuits report"
    page = page.replace("<title>sparsecircuits viewer</title>", f"<title>{_escape(title)}</title>")
    page = page.replace(CSS_TAG, f"<style>\n{_inline('style.css', '</style')}</style>")
    page = page.replace(
        GRAPH_TAG,
        f'<script id="sc-data" type="application/json">{_script_json(data)}</script>\n'
        f"<script>\n{_inline('graph.js', '</script')}</script>",
    )
    return page.replace(VIEWER_TAG, f"<script>\n{_inline('viewer.js', '</script')}</script>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_report(
    circuit_path: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    stats: StatsConfig | None = None,
    n: int = 32,
) -> Path:
    """Write the report and return its path."""
    html = render_html(report_data(circuit_path, model, stats, n))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
