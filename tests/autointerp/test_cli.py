"""`sparsecircuits explain` as a user runs it: results, the cache reused, one-line errors."""

import json
import subprocess
import sys

import pytest

from sparsecircuits.autointerp.cache import cached_explanations
from sparsecircuits.checkpoint import load_checkpoint


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecircuits", "explain", *map(str, args)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _assert_one_line_error(proc, message):
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "0.mlp.post_act.99999"], "unknown unit '0.mlp.post_act.99999'"),
    (["--nodes", "7.mlp.post_act.1"], "no location '7.mlp.post_act'"),
    (["--nodes", "sae.0123456789ab.3"], "pass the SAE it belongs to"),
    (["--nodes", "banana"], "is not a unit name"),
    (["--at", "0.mlp.nowhere"], "unknown location '0.mlp.nowhere'"),
    (["--llm-url", "http://127.0.0.1:9"], "--llm-url and --llm-model go together"),
])  # fmt: skip
def test_bad_requests_are_one_line_errors(tiny_run, tmp_path, args, message):
    proc = _cli(tiny_run, *args, "--cache", tmp_path)
    _assert_one_line_error(proc, message)
    assert not any(tmp_path.rglob("*.json"))  # nothing written


def test_explains_scores_caches_and_reuses(tiny_run, tmp_path):
    out = tmp_path / "results.json"
    args = [tiny_run, "--at", "0.mlp.post_act", "--sample", "6", "--windows", "8",
            "--contexts", "5", "--cache", tmp_path / "cache"]  # fmt: skip
    first = _cli(*args, "--out", out)
    assert first.returncode == 0, first.stderr
    results = json.loads(out.read_text())["results"]
    assert len(results) == 6
    scored = [r for r in results if r["status"] == "ok"]
    assert scored and all(0.0 <= r["detection"] <= 1.0 and r["explanation"] for r in scored)
    second = _cli(*args)
    assert second.returncode == 0, second.stderr
    assert "all 6 units cached" in second.stderr
    # the viewer's reader finds each unit under the model's content hash
    loaded = load_checkpoint(tiny_run)
    found = cached_explanations(loaded.content_hash, results[0]["unit"], tmp_path / "cache")
    assert len(found) == 1 and found[0]["unit"] == results[0]["unit"]
    assert found[0]["explainer"]["kind"] == "offline"
    assert cached_explanations(loaded.content_hash, "9.mlp.post_act.0", tmp_path / "cache") == []
