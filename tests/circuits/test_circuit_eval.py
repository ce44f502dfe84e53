"""`circuit eval`: a saved circuit measured on a task, the way `prune` validated it."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from sparsecircuits.circuits.circuit_file import load_circuit
from sparsecircuits.circuits.cli import register
from sparsecircuits.circuits.evaluate_circuit import evaluate_circuit
from sparsecircuits.errors import CircuitError, TaskError
from tests.bracket_task import WORDS

QUICK = ["--steps", "6", "--set", "batch_size=16", "--set", "mean_windows=4", "--no-progress"]


def _invoke(*args):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def bracket_circuit(tiny_run, bracket_task, tmp_path_factory):
    """A circuit of the tiny model on the bracket task (two_way loss, no controls)."""
    out = tmp_path_factory.mktemp("eval-circuits")
    r = _invoke("prune", tiny_run, "--task", bracket_task, "--loss", "two_way",
                "--target-loss", "50", "--no-controls", "--no-baseline", "--out", out,
                "--cache-dir", out / "means", *QUICK)  # fmt: skip
    assert r.exit_code == 0, r.output
    return out / "bracket" / "circuit.json"


ROW_OF_VALIDATION = {
    "full_model": "full_model",
    "sufficiency": "sufficiency",
    "sufficiency_uncalibrated": "sufficiency_uncalibrated",
    "necessity": "necessity",
    "all_ablated": "all_ablated",
}


@pytest.mark.slow
def test_numbers_on_the_circuits_own_task_are_the_stored_validation(bracket_circuit, bracket_task):
    stored = load_circuit(bracket_circuit).validation
    result = evaluate_circuit(bracket_circuit, str(bracket_task), split="test")
    assert result["loss"] == "two_way" and result["same_candidates"]
    assert result["examples"] == load_circuit(bracket_circuit).task["split_sizes"]["test"]
    for row, key in ROW_OF_VALIDATION.items():
        for metric in ("loss", "task_loss", "two_way_loss", "accuracy"):
            assert math.isclose(result[row][metric], stored[key][metric], rel_tol=1e-5,
                                abs_tol=1e-6), (row, metric)  # fmt: skip
    assert math.isclose(result["necessity_fraction"], stored["necessity_fraction"],
                        rel_tol=1e-5, abs_tol=1e-6)  # fmt: skip


@pytest.mark.slow
def test_all_splits_cover_every_example_once(bracket_circuit, bracket_task):
    sizes = load_circuit(bracket_circuit).task["split_sizes"]
    whole = evaluate_circuit(bracket_circuit, str(bracket_task), split="all")
    assert whole["examples"] == sizes["train"] + sizes["val"] + sizes["test"]
    # accuracy over all = the size-weighted mean of the three splits' accuracies
    parts = {s: evaluate_circuit(bracket_circuit, str(bracket_task), split=s) for s in sizes}
    for row in ("full_model", "sufficiency", "necessity"):
        weighted = sum(parts[s][row]["accuracy"] * sizes[s] for s in sizes) / whole["examples"]
        assert math.isclose(whole[row]["accuracy"], weighted, abs_tol=1e-6)


@pytest.mark.slow
def test_cli_prints_a_table_and_writes_json(bracket_circuit, tmp_path):
    task = tmp_path / "parens.jsonl"  # another task: a user file of plain "(" vs "[" closings
    words = WORDS + ("alpha beta", "beta gamma", "gamma delta", "value name", "data item")
    lines = [{"context": f"y = g({w}", "correct": ")", "wrong": "]"} for w in words]
    lines += [{"context": f"y = g[{w}", "correct": "]", "wrong": ")"} for w in words]
    task.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "eval.json"
    r = _invoke("circuit", "eval", bracket_circuit, "--task", task, "--split", "all",
                "--json", out)  # fmt: skip
    assert r.exit_code == 0, r.output
    for label in ("full model", "circuit alone (calibrated)", "model without the circuit"):
        assert label in r.output
    doc = json.loads(out.read_text())
    assert doc["examples"] == len(lines) and doc["task"] == str(task)
    assert 0.0 <= doc["sufficiency"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_bad_inputs_are_one_line_errors(bracket_circuit, tiny_run, tmp_path):
    multi = tmp_path / "multi.jsonl"  # candidates no 512-token BPE has as one token
    multi.write_text(json.dumps({"context": "x = 1", "correct": " zqxjkvw_unlikely",
                                 "wrong": " qqqzzzyyy_never"}) + "\n")  # fmt: skip
    cases = [
        (["--task", str(multi)], TaskError, "not single tokens"),
        (["--task", "no_such_task"], TaskError, "unknown task"),
        (["--task", "single_double_quote", "--split", "dev"], TaskError, "unknown split"),
        (["--task", "single_double_quote", "--model", tmp_path], CircuitError, "not a checkpoint"),
        (["--task", "single_double_quote", "--device", "gpu"], CircuitError, "--device"),
    ]
    for args, kind, message in cases:
        r = _invoke("circuit", "eval", bracket_circuit, *args)
        assert isinstance(r.exception, kind), (args, r.output, r.exception)
        assert message in str(r.exception) and "\n" not in str(r.exception), str(r.exception)
    r = _invoke("circuit", "eval", tmp_path / "missing.json", "--task", "single_double_quote")
    assert isinstance(r.exception, CircuitError) and "does not exist" in str(r.exception)


@pytest.mark.slow
def test_a_model_with_other_weights_is_refused(bracket_circuit, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = load_circuit(bracket_circuit).model["path"]
    other = tmp_path / "other"
    shutil.copytree(ckpt, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, other / "model.safetensors")
    r = _invoke("circuit", "eval", bracket_circuit, "--task", "single_double_quote",
                "--model", other)  # fmt: skip
    assert isinstance(r.exception, CircuitError) and "is not the model" in str(r.exception)
