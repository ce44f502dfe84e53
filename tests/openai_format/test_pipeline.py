"""A model in their format goes through import -> tasks eval -> prune -> report, CLI only."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparsecircuits import cli
from sparsecircuits.checkpoint import load_checkpoint
from tests.bracket_task import write_bracket_task
from tests.conftest import TEST_CORPUS


def _run(*args) -> str:
    if "prune" not in {c.name for c in cli.app.registered_commands}:
        cli._mount()
    r = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert r.exit_code == 0, (args[0], r.output, r.exception)
    return r.output


@pytest.mark.slow
def test_import_eval_prune_report(make_model_dir, data_cache, tmp_path):
    model_dir, _, _ = make_model_dir(block_size=32)
    out = tmp_path / "models" / "csp_tiny"
    text = _run("import-openai", model_dir, "--out", out,
                "--set", f"data.sources=[{TEST_CORPUS}]", "--set", f"data.cache_dir={data_cache}")
    assert "checkpoint:" in text
    task = write_bracket_task(load_checkpoint(out).tokenizer, tmp_path / "bracket.jsonl", n=64,
                              max_words=3)

    evaluated = _run("tasks", "eval", out, "--tasks", task, "--json", tmp_path / "eval.json")
    assert "bracket" in evaluated and (tmp_path / "eval.json").is_file()

    circuits = tmp_path / "circuits"
    _run("prune", out, "--task", task, "--target-loss", "50", "--out", circuits,
         "--cache-dir", tmp_path / "means", "--steps", "4", "--set", "batch_size=16",
         "--set", "mean_windows=4", "--no-progress")
    circuit = circuits / "bracket" / "circuit.json"
    assert circuit.is_file()
    nodes = json.loads(circuit.read_text())["nodes"]
    assert all(n.split(".")[1] in ("attn", "mlp") for n in nodes)  # our node names

    report = tmp_path / "report.html"
    _run("report", circuit, "--out", report, "--windows", "4", "--n", "8")
    assert report.stat().st_size > 0
