"""`prune --out` that cannot be written fails before any pruning, not after minutes of it."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sparsecircuits.circuits.cli import register
from sparsecircuits.errors import CircuitError


def _prune(*args):
    app = typer.Typer()
    register(app)
    app.command("noop", hidden=True)(lambda: None)  # keeps `prune` a named subcommand
    return CliRunner().invoke(app, ["prune", *map(str, args)])


@pytest.mark.parametrize("mode", ["--task", "--all-tasks"])
def test_out_that_is_a_file_is_refused_before_pruning(tiny_run, tmp_path, mode):
    file = tmp_path / "results.txt"
    file.write_text("keep me")
    means = tmp_path / "means"
    task = ["--task", "single_double_quote"] if mode == "--task" else ["--all-tasks"]
    for out in (file, file / "sub"):
        r = _prune(tiny_run, *task, "--out", out, "--cache-dir", means, "--no-progress")
        assert isinstance(r.exception, CircuitError), r.output
        assert "is not a directory" in str(r.exception) and "\n" not in str(r.exception)
    assert not means.exists(), "pruning started before the output was checked"
    assert file.read_text() == "keep me"


def test_a_task_directory_that_is_a_file_is_refused_before_pruning(tiny_run, tmp_path):
    out = tmp_path / "circuits"
    out.mkdir()
    (out / "single_double_quote").write_text("not a directory")
    means = tmp_path / "means"
    r = _prune(tiny_run, "--task", "single_double_quote", "--out", out, "--cache-dir", means,
               "--no-progress")  # fmt: skip
    assert isinstance(r.exception, CircuitError), r.output
    assert "circuit directory" in str(r.exception) and "not a directory" in str(r.exception)
    assert not means.exists()
