"""Explanations of units in the viewer and the report (docs/autointerp.md).

The viewer and the report show, next to a node's or an SAE latent's name, the explanation and
score `sparsecircuits explain` cached for it (`autointerp.cache`, keyed by the model's content
hash): on the graph's nodes (tooltip, label, search), in the node panel and on the latent page,
whose search lists an SAE's latents by explanation (`search_latents`).
A unit without a cached result gets no `explanation` key at all, so nothing is shown for it.

    {"status": "ok", "text": "fires on ...", "detection": 0.87, "correlation": 0.61,
     "fuzzing": null, "explainer": "offline"}
    {"status": "inactive", "explainer": "offline"}        never clearly active on held-out text

With `--explain` (`ExplanationSource(compute=True)`) the offline explainer runs first on the
units shown (a circuit's nodes, the report's latents), through the same cache: a re-run reuses
every result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecircuits.autointerp.cache import cache_files, cached_units
from sparsecircuits.autointerp.corpus import ExplainConfig
from sparsecircuits.checkpoint import Loaded
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.sae.sae_file import SAEHandle

log = logging.getLogger(__name__)

SHOWN = ("ok", "inactive")
"""Statuses the viewer shows (a failed LLM call is for `explain` to retry, not to show)."""
MAX_QUERY_CHARS = 200
MAX_SEARCH_HITS = 50
"""Latents a search lists at most, best first (the total is reported too)."""


def explainer_label(settings: Any) -> str:
    """'offline', or 'llm <model>': which explainer wrote a result."""
    if not isinstance(settings, dict):
        return "?"
    kind = str(settings.get("kind", "?"))
    return f"{kind} {settings['model']}" if kind == "llm" and settings.get("model") else kind


def shown_explanation(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What the viewer shows of a unit's cached results (newest first): the newest scored
    explanation, else the newest 'inactive' note, else None."""
    for wanted in SHOWN:
        for r in results:
            if r.get("status") != wanted:
                continue
            label = explainer_label(r.get("explainer"))
            if wanted == "inactive":
                return {"status": "inactive", "explainer": label}
            if not isinstance(r.get("explanation"), str) or not r["explanation"]:
                continue
            return {
                "status": "ok", "text": r["explanation"], "explainer": label,
                **{k: _score(r.get(k)) for k in ("detection", "correlation", "fuzzing")},
            }  # fmt: skip
    return None


def _score(x: Any) -> float | None:
    return float(f"{x:.4g}") if isinstance(x, int | float) and x == x else None


def latent_unit(sae_hash: str, latent: int) -> str:
    """The explain cache's name of an SAE latent (`autointerp.units`)."""
    return f"sae.{sae_hash}.{latent}"


def search_latents(table: dict[str, dict[str, Any]], sae_hash: str, d_sae: int, query: str,
                   limit: int = MAX_SEARCH_HITS) -> dict[str, Any]:  # fmt: skip
    """The SAE's latents whose shown explanation (in `table`) contains `query`, ignoring case,
    best detection first (ties: lower index): {"query", "explained" (latents with an
    explanation), "total" (hits), "hits": up to `limit` of {"latent", **shown explanation}}."""
    query = query.strip()
    if not query:
        raise SparseCircuitsError("search for some text: the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise SparseCircuitsError(f"the query is {len(query)} characters long; at most "
                                  f"{MAX_QUERY_CHARS} are searched for")  # fmt: skip
    needle, explained, hits = query.lower(), 0, []
    for i in range(d_sae):
        shown = table.get(latent_unit(sae_hash, i))
        if shown is None or shown["status"] != "ok":
            continue
        explained += 1
        if needle in shown["text"].lower():
            hits.append({"latent": i, **shown})
    hits.sort(key=lambda h: (h["detection"] is None, -(h["detection"] or 0.0), h["latent"]))
    return {"query": query, "explained": explained, "total": len(hits), "hits": hits[:limit]}


@dataclass
class ExplanationSource:
    """Where the viewer reads explanations from, and whether it computes them first."""

    cache_dir: Path | None = None
    """The explain cache (None: ~/.cache/sparsecircuits/explanations, `explain`'s default)."""
    compute: bool = False
    """`--explain`: run the offline explainer on the units shown before showing them."""
    cfg: ExplainConfig = field(default_factory=ExplainConfig)
    """Text the explainer reads (the default is `explain`'s, so their caches are shared)."""
    _tables: dict[str, tuple[tuple, dict[str, dict[str, Any]]]] = field(
        default_factory=dict, repr=False)
    _sae_hashes: dict[Path, str] = field(default_factory=dict, repr=False)

    def table(self, content_hash: str) -> dict[str, dict[str, Any]]:
        """{unit: shown explanation} of the model with this content hash, re-read only when
        a cache file changed."""
        files = cache_files(content_hash, self.cache_dir)
        stamp = tuple((f.name, _mtime(f)) for f in files)
        known = self._tables.get(content_hash)
        if known is not None and known[0] == stamp:
            return known[1]
        table = {}
        if files:
            for unit, results in cached_units(content_hash, self.cache_dir).items():
                shown = shown_explanation(results)
                if shown is not None:
                    table[unit] = shown
        self._tables[content_hash] = (stamp, table)
        return table

    def sae_hash(self, sae: SAEHandle) -> str:
        """The SAE's name part in latent unit names (sha256 of its file, remembered)."""
        from sparsecircuits.autointerp.units import sae_id

        key = Path(sae.path).resolve()
        if key not in self._sae_hashes:
            self._sae_hashes[key] = sae_id(sae)
        return self._sae_hashes[key]

    def explain(self, loaded: Loaded, nodes: Iterable[str] = (), sae: SAEHandle | None = None,
                latents: Iterable[int] = ()) -> int:  # fmt: skip
        """Run the offline explainer on these nodes (and latents of `sae`), into the cache;
        the number of units explained or found cached. A node the model lacks is skipped."""
        from sparsecircuits.autointerp import AutointerpError
        from sparsecircuits.autointerp.offline import OfflineExplainer
        from sparsecircuits.autointerp.run import explain_units, open_cache
        from sparsecircuits.autointerp.units import parse_unit, sae_units

        units = []
        for name in dict.fromkeys(nodes):
            try:
                units.append(parse_unit(loaded.model, name))
            except AutointerpError as exc:  # e.g. a circuit of another model's shape
                log.warning("explain: skipping %s", exc)
        if sae is not None:
            units += sae_units(sae, self.sae_hash(sae), sorted(set(latents)))
        if not units:
            return 0
        explainer = OfflineExplainer()
        cache = open_cache(loaded, explainer, self.cfg, self.cache_dir)
        explain_units(loaded, units, explainer, cache, self.cfg, sae)  # one corpus for all
        return len(units)


def _mtime(file: Path) -> int:
    try:
        return file.stat().st_mtime_ns
    except OSError:
        return -1


def attach_to_graph(view: dict[str, Any], table: dict[str, dict[str, Any]]) -> int:
    """Put each drawn node's explanation on it (`view['graph']['nodes']`); how many got one."""
    found = 0
    for node in view["graph"]["nodes"]:
        shown = table.get(node["name"])
        if shown is not None:
            node["explanation"] = shown
            found += 1
    return found


def attach_to_panel(panel: dict[str, Any], table: dict[str, dict[str, Any]], unit: str) -> None:
    """Put the unit's explanation on its node panel or latent page, if it has one."""
    shown = table.get(unit)
    if shown is not None:
        panel["explanation"] = shown


def report_explanations(source: ExplanationSource, loaded: Loaded, content_hash: str,
                        view: dict[str, Any], panels: dict[str, dict[str, Any]],
                        latents: dict[str, Any] | None = None,
                        sae_path: str | Path | None = None) -> None:  # fmt: skip
    """The report's explanations: computed first with `source.compute` (the drawn nodes, and
    the latents the report has pages of, `latents` from `latents.report_latents` of the SAE
    at `sae_path`), then put on the graph, the node panels and the latent pages."""
    from sparsecircuits.sae.sae_file import load_sae

    drawn = [node["name"] for node in view["graph"]["nodes"]]
    chosen = [int(i) for i in latents["order"]] if latents is not None else []
    sae = load_sae(sae_path) if chosen and sae_path is not None else None
    if source.compute:
        source.explain(loaded, drawn, sae, chosen)
    table = source.table(content_hash)
    attach_to_graph(view, table)
    for name, panel in panels.items():
        attach_to_panel(panel, table, name)
    if latents is not None and sae is not None and table:  # else: no need to hash the SAE
        sae_hash = source.sae_hash(sae)
        for i, panel in latents["panels"].items():
            attach_to_panel(panel, table, latent_unit(sae_hash, int(i)))


def explain_workspace(workspace: Any, saes: Any, source: ExplanationSource) -> list[str]:
    """`serve --explain`: the nodes of every circuit under the artifacts directory (a
    `Workspace`), explained with the circuit's model, and every latent of each SAE (a
    `LatentSource`) with the model it was trained on: a live viewer can open any latent.
    Returns one line per model, for the console."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.errors import SparseCircuitsError
    from sparsecircuits.viewer.workspace import find_circuit_model, weights_hash

    scan = workspace.scan()
    nodes: dict[Path, list[str]] = {}
    for ref in scan.circuits:
        try:
            circuit = workspace.circuit(ref)
            ckpt, _ = find_circuit_model(circuit, workspace.root, scan.models)
        except SparseCircuitsError as exc:  # the viewer lists it as unreadable: not fatal
            log.warning("explain: skipping %s: %s", ref, exc)
            continue
        nodes.setdefault(Path(ckpt).resolve(), []).extend(circuit.nodes)
    latents: dict[Path, list[SAEHandle]] = {}
    for sae in saes.saes.values():
        want = sae.meta["model"]["content_hash"]
        ckpt = next((c for c in scan.models.values() if weights_hash(c) == want), None)
        if ckpt is None:
            log.warning("explain: no model under %s has the weights of SAE %s",
                        workspace.root, sae.path.parent.name)  # fmt: skip
            continue
        latents.setdefault(Path(ckpt).resolve(), []).append(sae)
    lines = []
    for ckpt in dict.fromkeys([*nodes, *latents]):
        loaded = load_checkpoint(ckpt)
        count = source.explain(loaded, nodes.get(ckpt, []))
        for sae in latents.get(ckpt, []):
            count += source.explain(loaded, (), sae, range(sae.sae.d_sae))
        lines.append(f"explained {count} units of {workspace.relative(ckpt)} (offline; "
                     f"cache {source.cache_dir or '~/.cache/sparsecircuits/explanations'})")
    return lines
