"""`sparsecircuits steer | report | serve` as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sparsecircuits.cli import _mount, app
from sparsecircuits.errors import SparseCircuitsError

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def mounted():
    if "steer" not in {c.name for c in app.registered_commands}:
        _mount()


def test_steer_prints_both_generations(tiny_checkpoint):
    result = runner.invoke(app, ["steer", str(tiny_checkpoint), "--node", "0.mlp.post_act.5",
                                 "--scale", "-1", "--prompt", 'print("hi', "--tokens", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "--- without intervention ---"
    assert any(line.startswith("--- with 0.mlp.post_act.5 scaled by -1") for line in lines)
    assert result.output.count('print("hi') == 2


def test_steer_with_mean_ablation(tiny_checkpoint):
    result = runner.invoke(app, ["steer", str(tiny_checkpoint), "--node", "1.attn.v.3",
                                 "--ablate", "mean", "--prompt", "x = ", "--tokens", "2",
                                 "--windows", "4"])
    assert result.exit_code == 0, result.output
    assert "mean-ablated" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--node", "0.mlp.post_act.5", "--prompt", "x"], "exactly one of"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--clamp", "1", "--prompt", "x"],
         "exactly one of"),
        (["--node", "0.mlp.post_act.5", "--ablate", "half", "--prompt", "x"], "'mean' or 'zero'"),
        (["--node", "9.mlp.post_act.5", "--scale", "2", "--prompt", "x"], "unknown node"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--prompt", ""], "prompt"),
        (["--node", "0.mlp.post_act.\u00b2", "--scale", "2", "--prompt", "x"], "not a node name"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--prompt", "x", "--seed",
          "99999999999999999999999"], "seed"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--prompt", "x", "--top-k", "0"],
         "top-k"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--prompt", "x", "--temperature",
          "nan"], "temperature"),
        (["--node", "0.mlp.post_act.5", "--scale", "2", "--prompt", "x", "--windows", "0"],
         "--windows"),
    ],
)
def test_steer_rejects_bad_requests_with_a_user_error(tiny_checkpoint, args, message):
    result = runner.invoke(app, ["steer", str(tiny_checkpoint), *args])
    assert isinstance(result.exception, SparseCircuitsError), result.output
    assert message in str(result.exception)


def test_a_user_error_is_one_line_and_exit_code_2(tiny_checkpoint):
    """As a user runs it: the entry point prints `error: ...` and exits 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "steer", str(tiny_checkpoint), "--node",
         "9.mlp.post_act.5", "--scale", "2", "--prompt", "x"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: unknown node") and "Traceback" not in proc.stderr


def test_report_command_writes_the_file(handmade, tmp_path):
    out = tmp_path / "c.html"
    result = runner.invoke(app, ["report", str(handmade), "-o", str(out), "--windows", "4",
                                 "--n", "8"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"wrote {out}" in result.output


def test_serve_refuses_a_missing_artifacts_directory(tmp_path):
    result = runner.invoke(app, ["serve", "--artifacts", str(tmp_path / "no")])
    assert isinstance(result.exception, SparseCircuitsError)
    assert "does not exist" in str(result.exception)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecircuits", *args], capture_output=True,
                          text=True, timeout=300)


def test_report_onto_its_own_circuit_is_refused_and_the_circuit_kept(handmade, tmp_path):
    circuit = tmp_path / "c" / "circuit.json"
    circuit.parent.mkdir()
    circuit.write_bytes(handmade.read_bytes())
    proc = _run("report", str(circuit), "-o", str(circuit))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert circuit.read_bytes() == handmade.read_bytes()


def test_report_onto_a_checkpoint_config_is_refused(handmade, tiny_checkpoint, tmp_path):
    config = tmp_path / "run" / "checkpoint" / "config.json"
    shutil.copytree(tiny_checkpoint, config.parent)
    before = config.read_bytes()
    result = runner.invoke(app, ["report", str(handmade), "-o", str(config)])
    assert isinstance(result.exception, SparseCircuitsError)
    assert "refusing to overwrite" in str(result.exception)
    assert config.read_bytes() == before


def test_report_into_a_directory_writes_the_circuit_name(handmade, tmp_path):
    result = runner.invoke(app, ["report", str(handmade), "-o", str(tmp_path), "--windows", "2",
                                 "--n", "4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "handmade.html").is_file()
    again = runner.invoke(app, ["report", str(handmade), "-o", str(tmp_path / "handmade.html"),
                                "--windows", "2", "--n", "4"])
    assert again.exit_code == 0, again.output  # an earlier report is replaced


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["nodes"].append(dict(d["nodes"][0], name="0.mlp.post_act.\u00b2")), "node"),
        (lambda d: d["calibration"].update(scale=1e300), "calibration.scale"),
    ],
)
def test_report_of_a_damaged_circuit_is_one_line(handmade, tmp_path, change, message):
    doc = json.loads(handmade.read_text())
    change(doc)
    circuit = tmp_path / "bad" / "circuit.json"
    circuit.parent.mkdir()
    circuit.write_text(json.dumps(doc))
    proc = _run("report", str(circuit), "-o", str(tmp_path / "r.html"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and not (tmp_path / "r.html").exists()
