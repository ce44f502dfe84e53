
import pytest
import typer
from typer.testing import CliRunner

from sparsecircuits.circuits.circuit_file import load_circuit, load_circuit_tensors
from sparsecircuits.circuits.cli import print_table, register
from sparsecircuits.circuits.pipeline import geometric_mean
from sparsecircuits.errors import CircuitError, TaskError


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps `prune` a named subcommand
        pass

    return app


def _prune(*args):
    return CliRunner().invoke(_app(), ["prune", *map(str, args)])


QUICK = ["--steps", "6", "--set", "batch_size=16", "--set", "mean_windows=4", "--no-progress"]


@pytest.mark.slow
def test_prune_writes_a_validated_circuit(tiny_run, bracket_task, tmp_path):
    out = tmp_path / "circuits"
    r = _prune(
        tiny_run,
        "--task",
        bracket_task,
        "--target-loss",
        "50",
        "--out",
        out,
        "--cache-dir",
        tmp_path / "means",
        *QUICK,
    )
    assert r.exit_code == 0, r.output
    assert "sufficiency" in r.output and "control random_weights" in r.output
    c = load_circuit(out / "bracket" / "circuit.json")
    assert c.task["name"].endswith("bracket.jsonl") and c.ablation == "mean"
    assert c.counts["nodes"] == len(c.nodes) and c.counts["edges"] == len(c.edges)
    assert c.counts["edges_total"] == len(c.edges) + len(c.embed_edges) + len(c.unembed_edges)
    assert c.losses["val_before_calibration"] <= 50
    assert [ctl["name"] for ctl in c.validation["controls"]] == ["random_weights", "nonsense_task"]
    assert c.baseline is not None and c.hyperparameters["steps"] == 6
    tensors = load_circuit_tensors(c)  # the sidecar, checked against the json's sha256
    assert {"mask_scores", "unit_gates", "attribution_scores"} <= set(tensors)
    assert any(name.startswith("mean.") for name in tensors)  # the ablation means
    assert list((tmp_path / "means").glob("*.safetensors"))  # means cached outside the run
    assert not list((tiny_run / "checkpoint").glob("*mean*"))


@pytest.mark.slow
def test_a_target_the_full_model_cannot_reach_is_a_clear_error(tiny_run, bracket_task, tmp_path):
    r = _prune(
        tiny_run,
        "--task",
        bracket_task,
        "--target-loss",
        "0.01",
        "--ablation",
        "zero",
        "--out",
        tmp_path,
        *QUICK,
    )
    assert isinstance(r.exception, CircuitError)
    assert "above the target 0.01" in str(r.exception) and "\n" not in str(r.exception)


def test_bad_requests_are_one_line_errors(tiny_run, tmp_path):
    cases = [
        (["--task", "no_such_task"], TaskError, "unknown task"),
        ([], CircuitError, "exactly one of"),
        (["--task", "single_double_quote", "--all-tasks"], CircuitError, "exactly one of"),
        (["--task", "single_double_quote", "--ablation", "median"], CircuitError, "ablation"),
        (["--task", "single_double_quote", "--set", "k_coeff=1"], CircuitError, "k_coeff"),
    ]
    for args, kind, message in cases:
        r = _prune(tiny_run, *args, "--out", tmp_path)
        assert isinstance(r.exception, kind), (args, r.output, r.exception)
        assert message in str(r.exception) and "\n" not in str(r.exception)


def test_all_tasks_table_and_geometric_mean(capsys):
    rows = [
        {
            "task": "a",
            "nodes": 12,
            "edges": 9,
            "edges_total": 20,
            "full_val": 0.01,
            "val": 0.14,
            "val_cal": 0.1,
            "test": 0.12,
            "necessity": 3.0,
        },
        {
            "task": "b",
            "nodes": 40,
            "edges": 100,
            "edges_total": 150,
            "full_val": 0.02,
            "val": 0.15,
            "val_cal": 0.1,
            "test": 0.13,
            "necessity": 2.0,
        },
        {"task": "c", "error": "the full model's val task loss is 0.9, above the target"},
    ]
    print_table(rows)
    out = capsys.readouterr().out
    assert "geometric mean of edges over 2 task(s): 30.0" in out
    assert "above the target" in out
    assert geometric_mean([9, 100]) == pytest.approx(30.0)
    assert geometric_mean([0, 4]) == pytest.approx(2.0)  # an edgeless circuit counts as 1
