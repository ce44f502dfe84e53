"""A model in their format goes through import -> tasks eval -> prune -> report, CLI only."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from sparsecircuits import cli
from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.tasks.base import TaskExample
from sparsecircuits.tasks.encoding import ExampleChecker
from tests.conftest import TEST_CORPUS

WORDS = ("alpha", "beta", "gamma", "delta", "value", "name", "data", "item", "self", "key")


def _run(*args) -> str:
    if "prune" not in {c.name for c in cli.app.registered_commands}:
        cli._mount()
    r = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert r.exit_code == 0, (args[0], r.output, r.exception)
    return r.output


def _bracket_task(tokenizer, path):
    """Close `f(...` with `)` and `f[...` with `]`, in the imported tokenizer."""
    checker, rng, lines = ExampleChecker(tokenizer), random.Random(0), []
    while len(lines) < 64:
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        opener = rng.choice("([")
        correct, wrong = (")", "]") if opener == "(" else ("]", ")")
        ex = TaskExample(f"x = f{opener}{body}", correct, wrong)
        if checker.offending_candidates(ex) or checker.boundary_failures([ex])[0]:
            continue
        lines.append(json.dumps({"context": ex.context, "correct": correct, "wrong": wrong}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_import_eval_prune_report(make_model_dir, data_cache, tmp_path):
    model_dir, _, _ = make_model_dir(block_size=32)
    out = tmp_path / "models" / "csp_tiny"
    text = _run("import-openai", model_dir, "--out", out,
                "--set", f"data.sources=[{TEST_CORPUS}]", "--set", f"data.cache_dir={data_cache}")
    assert "checkpoint:" in text
    task = _bracket_task(load_checkpoint(out).tokenizer, tmp_path / "bracket.jsonl")

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
