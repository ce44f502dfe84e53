"""The single-file HTML report of a circuit: opens from file:// with no server and no network.

The live front end (static/index.html + style.css + graph.js + viewer.js) is inlined together
with a JSON document holding everything it would otherwise ask the API for: the circuit header
and graph, a node panel for every drawn node, each node's mean- and zero-ablation result on the
task, and the unablated baseline. The front end sees the JSON and runs in static mode.
Nodes and latent pages carry the explanations cached for them (`viewer.explanations`).

The output is checked before any work (`report_target`): only a missing file or an earlier
report (recognised by `REPORT_MARKER` at its top) is ever replaced, so `-o circuit.json` or
`-o run/checkpoint/config.json` is a one-line error, not a lost artifact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sparsecircuits.checkpoint import resolve
from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.fileformat import atomic_write_text, strict_json_value
from sparsecircuits.viewer.circuit_adapter import read_circuit
from sparsecircuits.viewer.explanations import ExplanationSource, report_explanations
from sparsecircuits.viewer.graph import shown_path
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.panels import (
    circuit_view,
    intervention_result,
    node_panels,
    single_ablations,
)
from sparsecircuits.viewer.workspace import find_circuit_model, hash_warnings, load_handle

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CSS_TAG = '<link rel="stylesheet" href="static/style.css">'
GRAPH_TAG = '<script src="static/graph.js"></script>'
VIEWER_TAG = '<script src="static/viewer.js"></script>'
LATENTS_TAG = '<script src="static/latents.js"></script>'
CHARSET_TAG = '<meta charset="utf-8">'
REPORT_MARKER = '<meta name="generator" content="sparsecircuits report">'
"""Written right after the charset tag, in the first few hundred bytes of every report."""
MARKER_WINDOW = 4096

Phase = Callable[[str], AbstractContextManager[Any]]
"""`phase(name)`: a context around one step of the report (benchmarks/report_speed.py times
them); the default does nothing."""


def _no_phase(name: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def report_data(
    circuit_path: str | Path,
    model: str | Path | None = None,
    stats: StatsConfig | None = None,
    n: int = 32,
    sae: str | Path | None = None,
    phase: Phase = _no_phase,
    explanations: ExplanationSource | None = None,
) -> dict[str, Any]:
    """Everything the static front end shows, computed once (with `sae`: latent pages too).
    `explanations`: where the units' cached explanations are read from (default: `explain`'s
    cache), and whether they are computed first (`--explain`)."""
    with phase("load"):
        circuit = read_circuit(circuit_path)
        if model is not None:
            ckpt = resolve(model)
            warnings = hash_warnings(circuit, ckpt)
        else:
            ckpt, warnings = find_circuit_model(circuit, root=None)
        # The header names the model relative to where the report is made, never absolutely.
        handle = load_handle(ckpt, shown_path(ckpt), stats or StatsConfig())
    latents = None
    if sae is not None:  # first: an SAE of another model fails before the long work
        from sparsecircuits.viewer.latents import report_latents

        with phase("latents"):
            latents = report_latents(handle, sae, circuit.task, n)
    with phase("graph"):
        view = circuit_view(handle, circuit, circuit.path.name, n, warnings)
    drawn = [node["name"] for node in view["graph"]["nodes"]]
    with phase("node panels"):
        panels = node_panels(handle, drawn, circuit.task, n, circuit)
    baseline: dict[str, Any] = {}
    ablations: dict[str, dict[str, dict[str, Any]]] = {}
    modes = ["model"] + (["circuit"] if circuit.ablation in (None, "mean", "zero") else [])
    try:
        with phase("baselines"):
            for mode in modes:
                baseline[mode] = intervention_result(handle, circuit.task, [], n, circuit, mode)
    except TaskError as exc:
        baseline = {}
        view["warnings"].append(f"no interventions in this report: {exc}")
    for mode in baseline:  # every drawn node mean- and zero-ablated alone, in batches
        with phase(f"ablations ({mode})"):
            ablations[mode] = single_ablations(handle, circuit.task, drawn,
                                               baseline[mode]["baseline"], n, circuit, mode)
    with phase("explanations"):  # reads a cache directory, unless computing (--explain)
        report_explanations(explanations or ExplanationSource(), handle.loaded,
                            handle.content_hash, view, panels, latents, sae)  # fmt: skip
    data = {"view": view, "nodes": panels, "baseline": baseline, "ablations": ablations}
    return data if latents is None else {**data, "latents": latents}


def _script_json(data: dict[str, Any]) -> str:
    """JSON for a <script type="application/json"> element that parses back to `data`.

    Inside a script element the HTML parser reacts to "</script" (ends it) and to "<!--"
    (after it, a "<script" makes the next "</script>" not end the element, so the inline
    scripts that follow become data and the page stays blank). "<" only occurs inside JSON
    strings, where the escape \\u003c means the same character, so none is left at all.
    Non-finite numbers have no JSON spelling and become null.
    """
    try:  # the usual case, and a quick one: nothing to replace
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a NaN or infinity somewhere
        text = json.dumps(strict_json_value(data), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c")


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
    if CHARSET_TAG not in page:
        raise RuntimeError(f"static/index.html lost the tag {CHARSET_TAG}")
    page = page.replace(CHARSET_TAG, f"{CHARSET_TAG}\n{REPORT_MARKER}", 1)
    title = f"{data['view']['circuit']['name']} · sparsecircuits report"
    page = page.replace("<title>sparsecircuits viewer</title>", f"<title>{_escape(title)}</title>")
    page = page.replace(CSS_TAG, f"<style>\n{_inline('style.css', '</style')}</style>")
    page = page.replace(
        GRAPH_TAG,
        f'<script id="sc-data" type="application/json">{_script_json(data)}</script>\n'
        f"<script>\n{_inline('graph.js', '</script')}</script>",
    )
    page = page.replace(VIEWER_TAG, f"<script>\n{_inline('viewer.js', '</script')}</script>")
    return page.replace(LATENTS_TAG, f"<script>\n{_inline('latents.js', '</script')}</script>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_report(
    circuit_path: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    stats: StatsConfig | None = None,
    n: int = 32,
    sae: str | Path | None = None,
    explanations: ExplanationSource | None = None,
) -> Path:
    """Write the report (see `report_target` for where) and return its path."""
    target = report_target(circuit_path, out)
    if sae is not None:
        from sparsecircuits.sae.sae_file import load_sae

        load_sae(sae)  # a missing or corrupt SAE: a one-line error before any work
    html = render_html(report_data(circuit_path, model, stats, n, sae,
                                   explanations=explanations))
    return atomic_write_text(target, html)


def is_report(path: Path) -> bool:
    """Whether `path` is a report this module wrote (its marker near the top)."""
    try:
        with open(path, "rb") as f:
            head = f.read(MARKER_WINDOW).decode("utf-8", errors="replace")
    except OSError:
        return False
    return head.lstrip().lower().startswith("<!doctype html") and REPORT_MARKER in head


def report_target(circuit_path: str | Path, out: str | Path) -> Path:
    """The file a report of `circuit_path` goes to, checked before any work is done.

    In an existing directory: `<circuit name>.html` there. SparseCircuitsError if the file
    exists and is not an earlier report, or cannot be created.
    """
    out = Path(out)
    if out.is_dir():
        circuit = Path(circuit_path)
        # The name the report's title uses: the pruner's files are all called circuit.json.
        pruned = circuit.stem == "circuit" and circuit.parent.name
        out = out / f"{circuit.parent.name if pruned else circuit.stem}.html"
    if os.path.lexists(out):
        if out.is_dir():
            raise SparseCircuitsError(f"--out {out} is a directory")
        if Path(circuit_path).is_file() and out.is_file() and out.samefile(circuit_path):
            raise SparseCircuitsError(f"--out {out} is the circuit file itself")
        if not is_report(out):
            raise SparseCircuitsError(
                f"refusing to overwrite {out}: it is not a report written by sparsecircuits "
                "(remove it or choose another --out)")
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SparseCircuitsError(f"cannot write {out}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SparseCircuitsError(f"cannot write {out}: {existing} is not writable")
    return out
