"""Explanations in the viewer and the report: what the API and the report's data carry.

The explanation cache is written with the real `ExplanationCache` (results chosen here, so the
expected values are known), or filled by the real offline explainer (`--explain`). A unit
with a cached result carries `explanation`; every other unit carries no such key.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sparsecircuits.autointerp.cache import ExplanationCache, cache_files
from sparsecircuits.autointerp.corpus import ExplainConfig
from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.sae.sae_file import load_sae
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.explanations import MAX_QUERY_CHARS, ExplanationSource, latent_unit
from sparsecircuits.viewer.latents import LatentSource
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.report import report_data
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.test_latents import train_tiny_sae

OFFLINE = {"kind": "offline", "version": 1, "corpus": {"windows": 8}}
LLM = {"kind": "llm", "url": "http://127.0.0.1:1/v1", "model": "judge-1", "key_env": "K"}


def ok(text: str, detection: float, correlation: float | None = 0.5) -> dict:
    return {"status": "ok", "explanation": text, "detection": detection,
            "correlation": correlation, "sign": 1.0, "threshold": 0.1}  # fmt: skip


INACTIVE = {"status": "inactive", "explanation": None, "detection": None, "correlation": None}
FAILED = {"status": "failed", "error": "HTTP 429", "explanation": None, "detection": None}


def write_cache(cache_dir: Path, content_hash: str, results: dict[str, dict],
                explainer: dict = OFFLINE, mtime_ns: int | None = None) -> Path:  # fmt: skip
    cache = ExplanationCache(cache_dir, content_hash, "model", explainer)
    for unit, result in results.items():
        cache.put(unit, {"unit": unit, **result})
    path = cache.save()
    if mtime_ns is not None:  # which file is newer must not depend on the clock's resolution
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture(scope="module")
def model_hash(tiny_checkpoint) -> str:
    return load_checkpoint(tiny_checkpoint).content_hash


@pytest.fixture(scope="module")
def circuit_nodes(artifacts, pruned_id) -> list[str]:
    return [n["name"] for n in json.loads((artifacts / pruned_id).read_text())["nodes"]]


def test_graph_and_node_panels_carry_cached_explanations_and_nothing_else(
    artifacts, pruned_id, circuit_nodes, model_hash, tmp_path
):
    first, second, third = circuit_nodes[:3]
    write_cache(tmp_path, model_hash, {
        first: ok("fires inside a single-quoted string", 0.91, 0.7),
        second: INACTIVE,
        third: FAILED,
        "0.mlp.post_act.1000000": ok("a unit the model does not have", 0.6),
    })  # fmt: skip
    app = create_app(Workspace(artifacts, StatsConfig(windows=8, top_k=3)),
                     explanations=ExplanationSource(tmp_path))  # fmt: skip
    client = TestClient(app, base_url="http://127.0.0.1")
    nodes = {n["name"]: n for n in
             client.get("/api/circuit", params={"id": pruned_id}).json()["graph"]["nodes"]}  # fmt: skip
    assert nodes[first]["explanation"] == {
        "status": "ok", "text": "fires inside a single-quoted string", "explainer": "offline",
        "detection": 0.91, "correlation": 0.7, "fuzzing": None,
    }  # fmt: skip
    assert nodes[second]["explanation"] == {"status": "inactive", "explainer": "offline"}
    assert {name for name, node in nodes.items() if "explanation" in node} == {first, second}

    def panel(node):
        return client.get("/api/node", params={"node": node, "circuit": pruned_id}).json()

    assert panel(first)["explanation"]["text"] == "fires inside a single-quoted string"
    assert "explanation" not in panel(third)  # a failed result is not shown
    assert "explanation" not in panel(circuit_nodes[-1])


def test_the_newest_scored_explanation_is_shown(artifacts, pruned_id, circuit_nodes,
                                                model_hash, tmp_path):  # fmt: skip
    a, b, c = circuit_nodes[:3]
    write_cache(tmp_path, model_hash, {a: ok("offline a", 0.7), b: ok("offline b", 0.6),
                                       c: INACTIVE}, OFFLINE, mtime_ns=10**18)  # fmt: skip
    write_cache(tmp_path, model_hash, {a: ok("llm a", 0.9, None), b: FAILED,
                                       c: ok("llm c", 0.55, None)}, LLM, mtime_ns=2 * 10**18)  # fmt: skip
    table = ExplanationSource(tmp_path).table(model_hash)
    assert table[a]["text"] == "llm a" and table[a]["explainer"] == "llm judge-1"
    assert table[b]["text"] == "offline b"  # the newer explainer failed on it
    assert table[c]["text"] == "llm c"  # a scored explanation beats a newer 'inactive'
    assert set(table) == {a, b, c}


def test_a_new_explain_run_shows_without_restarting_the_viewer(artifacts, pruned_id,
                                                               circuit_nodes, model_hash,
                                                               tmp_path):  # fmt: skip
    app = create_app(Workspace(artifacts, StatsConfig(windows=8, top_k=3)),
                     explanations=ExplanationSource(tmp_path))  # fmt: skip
    client = TestClient(app, base_url="http://127.0.0.1")

    def explained():
        graph = client.get("/api/circuit", params={"id": pruned_id}).json()["graph"]
        return {n["name"]: n["explanation"]["text"] for n in graph["nodes"] if "explanation" in n}

    assert explained() == {}
    write_cache(tmp_path, model_hash, {circuit_nodes[0]: ok("first run", 0.8)}, mtime_ns=10**18)
    assert explained() == {circuit_nodes[0]: "first run"}
    write_cache(tmp_path, model_hash, {circuit_nodes[0]: ok("first run", 0.8),
                                       circuit_nodes[1]: ok("second run", 0.7)},
                mtime_ns=2 * 10**18)  # fmt: skip
    assert explained() == {circuit_nodes[0]: "first run", circuit_nodes[1]: "second run"}


def test_a_damaged_cache_file_shows_nothing_and_breaks_nothing(artifacts, pruned_id,
                                                               model_hash, tmp_path):  # fmt: skip
    (tmp_path / model_hash).mkdir()
    (tmp_path / model_hash / "offline-000000000000.json").write_text("{not json")
    app = create_app(Workspace(artifacts, StatsConfig(windows=8, top_k=3)),
                     explanations=ExplanationSource(tmp_path))  # fmt: skip
    r = TestClient(app, base_url="http://127.0.0.1").get("/api/circuit", params={"id": pruned_id})
    assert r.status_code == 200
    assert not any("explanation" in n for n in r.json()["graph"]["nodes"])


@pytest.fixture(scope="module")
def sae_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    return train_tiny_sae(tiny_checkpoint, tmp_path_factory.mktemp("sae") / "tiny-sae")


def test_a_latent_page_carries_its_latents_explanation(artifacts, sae_dir, model_hash,
                                                       tmp_path):  # fmt: skip
    source = ExplanationSource(tmp_path)
    sae_hash = source.sae_hash(load_sae(sae_dir))
    write_cache(tmp_path, model_hash, {latent_unit(sae_hash, 3): ok("fires on `def`", 0.83),
                                       "1.resid_mid.3": ok("a residual channel", 0.6)})  # fmt: skip
    app = create_app(Workspace(artifacts, StatsConfig(windows=8, top_k=3)),
                     latents=LatentSource([sae_dir]), explanations=source)  # fmt: skip
    client = TestClient(app, base_url="http://127.0.0.1")
    page = client.get("/api/latent", params={"sae": "tiny-sae", "latent": 3}).json()
    assert page["explanation"]["text"] == "fires on `def`"
    other = client.get("/api/latent", params={"sae": "tiny-sae", "latent": 4}).json()
    assert other["latent"] == 4 and "explanation" not in other


LATENT_PHRASES = ["fires just before a closing quote", "fires inside a Double-Quoted string",
                  "fires on `self`", "(negative side) fires on line breaks"]


def explain_latents(cache_dir: Path, sae_dir: Path, model_hash: str) -> dict[int, dict]:
    """A cached result for every latent of the SAE (every 8th never active, the others one of
    LATENT_PHRASES with a seeded random detection), plus a node and a latent of another SAE
    that say "quote" too: {latent: result}."""
    sae = load_sae(sae_dir)
    sae_hash = ExplanationSource(cache_dir).sae_hash(sae)
    rng = random.Random(0)
    results = {i: ok(LATENT_PHRASES[i % 4], round(rng.uniform(0.5, 1), 3)) if i % 8 != 7
               else INACTIVE for i in range(sae.sae.d_sae)}  # fmt: skip
    others = {"1.resid_mid.3": ok("fires on a closing quote", 0.99),
              latent_unit("0" * 12, 2): ok("fires on a closing quote", 0.99)}  # fmt: skip
    write_cache(cache_dir, model_hash,
                {**{latent_unit(sae_hash, i): r for i, r in results.items()}, **others})
    return results


def ranked(results: dict[int, dict], query: str) -> list[int]:
    """The latents whose explanation contains the query, ignoring case, best detection first."""
    found = [i for i, r in results.items()
             if r["status"] == "ok" and query.lower() in r["explanation"].lower()]  # fmt: skip
    return sorted(found, key=lambda i: (-results[i]["detection"], i))


@pytest.fixture(scope="module")
def searched(artifacts, sae_dir, model_hash, tmp_path_factory):
    cache = tmp_path_factory.mktemp("latent-explanations")
    results = explain_latents(cache, sae_dir, model_hash)
    app = create_app(Workspace(artifacts, StatsConfig(windows=8, top_k=3)),
                     latents=LatentSource([sae_dir]),
                     explanations=ExplanationSource(cache))  # fmt: skip
    client = TestClient(app, base_url="http://127.0.0.1")

    def search(q: str, sae: str = "tiny-sae"):
        return client.get("/api/latent/search", params={"sae": sae, "q": q})

    return search, results


def test_latent_search_lists_matching_latents_best_first_capped(searched):
    search, results = searched
    r = search("  QUOTE ")
    assert r.status_code == 200
    found = r.json()
    want = ranked(results, "quote")
    assert len(want) > len(found["hits"]) > 0  # more latents match than are listed
    assert found["total"] == len(want)
    assert found["explained"] == sum(r["status"] == "ok" for r in results.values())
    assert [h["latent"] for h in found["hits"]] == want[: len(found["hits"])]
    best = results[want[0]]
    assert found["hits"][0] == {
        "latent": want[0], "status": "ok", "text": best["explanation"], "explainer": "offline",
        "detection": best["detection"], "correlation": 0.5, "fuzzing": None,
    }  # fmt: skip
    few = search("double-quoted").json()  # the cache says "Double-Quoted"
    assert [h["latent"] for h in few["hits"]] == ranked(results, "double-quoted")


def test_latent_search_without_a_hit_is_an_empty_list(searched):
    search, results = searched
    found = search("closing brace").json()
    assert found["total"] == 0 and found["hits"] == []
    assert found["explained"] == sum(r["status"] == "ok" for r in results.values())


@pytest.mark.parametrize(("q", "sae", "status", "says"), [
    ("", "tiny-sae", 400, "query is empty"),
    ("   ", "tiny-sae", 400, "query is empty"),
    ("x" * (MAX_QUERY_CHARS + 1), "tiny-sae", 400, f"at most {MAX_QUERY_CHARS}"),
    ("quote", "no-such-sae", 404, "unknown SAE 'no-such-sae'"),
])  # fmt: skip
def test_latent_search_refuses_bad_queries_and_unknown_saes(searched, q, sae, status, says):
    search, _ = searched
    r = search(q, sae)
    assert r.status_code == status
    message = r.json()["error"]
    assert says in message and "\n" not in message


def test_report_data_carries_cached_explanations_on_graph_and_panels(handmade, model_hash,
                                                                     tmp_path):  # fmt: skip
    nodes = [n["name"] for n in json.loads(handmade.read_text())["nodes"]]
    write_cache(tmp_path, model_hash, {nodes[0]: ok("fires after `print`", 0.88)})
    data = report_data(handmade, stats=StatsConfig(windows=8, top_k=3), n=8,
                       explanations=ExplanationSource(tmp_path))  # fmt: skip
    graph = {n["name"]: n for n in data["view"]["graph"]["nodes"]}
    assert graph[nodes[0]]["explanation"]["text"] == "fires after `print`"
    assert data["nodes"][nodes[0]]["explanation"]["detection"] == 0.88
    others = [n for n in nodes[1:] if "explanation" in graph[n] or "explanation" in data["nodes"][n]]
    assert others == []


def test_report_explain_computes_every_drawn_node_once(handmade, sae_dir, tiny_checkpoint,
                                                        tmp_path):  # fmt: skip
    """`report --explain`: the offline explainer runs on the drawn nodes and on the latents
    the report has pages of; a second report reuses the cache (nothing rewritten)."""
    source = ExplanationSource(tmp_path, compute=True, cfg=ExplainConfig(windows=8, contexts=5))
    data = report_data(handmade, stats=StatsConfig(windows=8, top_k=3), n=8, sae=sae_dir,
                       explanations=source)  # fmt: skip
    drawn = data["view"]["graph"]["nodes"]
    assert drawn and all(n["explanation"]["status"] in ("ok", "inactive") for n in drawn)
    assert all(data["nodes"][n["name"]]["explanation"] == n["explanation"] for n in drawn)
    assert any(n["explanation"]["status"] == "ok" for n in drawn)
    shown = data["latents"]["panels"]
    assert shown and all(p["explanation"]["status"] in ("ok", "inactive") for p in shown.values())
    loaded = load_checkpoint(tiny_checkpoint)
    [cache] = cache_files(loaded.content_hash, tmp_path)
    units = json.loads(cache.read_text())["units"]
    sae_hash = source.sae_hash(load_sae(sae_dir))
    assert set(units) == {n["name"] for n in drawn} | {latent_unit(sae_hash, int(i))
                                                       for i in shown}  # fmt: skip
    before = cache.stat().st_mtime_ns, cache.read_bytes()
    assert source.explain(loaded, [n["name"] for n in drawn]) == len(drawn)
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before


def test_report_explain_from_the_command_line(handmade, tmp_path):
    """`report --explain --explain-cache DIR`: every drawn node of the written report has its
    explanation; a second run finds them all in the cache."""
    def run():
        return subprocess.run(
            [sys.executable, "-m", "sparsecircuits", "report", str(handmade), "-o",
             str(tmp_path / "r.html"), "--windows", "8", "--n", "8", "--explain",
             "--explain-cache", str(tmp_path / "cache")],
            capture_output=True, text=True, timeout=900)  # fmt: skip

    first = run()
    assert first.returncode == 0, first.stderr
    html = (tmp_path / "r.html").read_text()
    start = html.index('<script id="sc-data" type="application/json">')
    data = json.loads(html[html.index(">", start) + 1 : html.index("</script>", start)])
    drawn = data["view"]["graph"]["nodes"]
    assert drawn and all(n["explanation"]["status"] in ("ok", "inactive") for n in drawn)
    second = run()
    assert second.returncode == 0, second.stderr
    assert f"all {len(drawn)} units cached" in second.stderr


def test_serve_takes_the_explain_flags():
    out = subprocess.run([sys.executable, "-m", "sparsecircuits", "serve", "--help"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--explain " in out.stdout and "--explain-cache" in out.stdout


def test_serve_explain_covers_every_circuits_nodes_and_every_latent(artifacts, pruned_id,
                                                                    handmade, sae_dir,
                                                                    model_hash, tmp_path):  # fmt: skip
    """`serve --explain`: the nodes of each circuit under the artifacts directory and all
    latents of each SAE, with the model that has the SAE's weights."""
    from sparsecircuits.viewer.explanations import explain_workspace

    source = ExplanationSource(tmp_path, compute=True, cfg=ExplainConfig(windows=8, contexts=5))
    ws = Workspace(artifacts, StatsConfig(windows=8, top_k=3))
    saes = LatentSource([sae_dir])
    lines = explain_workspace(ws, saes, source)
    assert len(lines) == 1 and "runs/tiny" in lines[0]  # one model holds them all
    table = source.table(model_hash)
    circuits = [json.loads(p.read_text())["nodes"] for p in (artifacts / pruned_id, handmade)]
    nodes = {n["name"] for nodes in circuits for n in nodes}
    sae_hash = source.sae_hash(load_sae(sae_dir))
    latents = {latent_unit(sae_hash, i) for i in range(load_sae(sae_dir).sae.d_sae)}
    assert nodes | latents <= set(table)
