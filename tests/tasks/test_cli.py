"""`sparsecircuits tasks list | show | eval` on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sparsecircuits.errors import SparseCircuitsError, TaskError
from sparsecircuits.tasks import all_tasks
from sparsecircuits.tasks.cli import app

from .test_jsonl import write_quote_task

runner = CliRunner()


def test_list_prints_every_task_with_its_source():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(all_tasks()) == 22
    assert lines[0].split()[:2] == ["single_double_quote", "builtin"]
    assert any(ln.split()[:2] == ["bracket_counting_long", "adversarial"] for ln in lines)


def test_show_renders_examples_with_both_candidates(tokenizer_path):
    result = runner.invoke(
        app, ["show", "with_as", "--n", "2", "--split", "test", "--tokenizer", str(tokenizer_path)]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("--- test #") == 2
    assert "correct ' as' (id " in out and "wrong ' as' (id " in out  # one of each class
    assert "tokenizer check: 2 checked, 0 dropped" in out
    assert "▌" in out


def test_show_without_a_tokenizer_shows_raw_examples():
    result = runner.invoke(app, ["show", "bracket_counting_distractor", "--n", "1"])
    assert result.exit_code == 0
    assert "correct '])'   wrong ']'" in result.stdout
    assert "# " in result.stdout  # the distracting comment line


def test_show_of_an_inexpressible_task_is_an_error(small_checkpoint):
    result = runner.invoke(
        app, ["show", "single_double_quote", "--checkpoint", str(small_checkpoint)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, TaskError)
    assert "cannot be expressed" in str(result.exception)


def test_eval_prints_a_table_and_writes_json(checkpoint, tmp_path):
    user = write_quote_task(tmp_path / "mine.jsonl")
    out = tmp_path / "report" / "eval.json"
    args = ["eval", str(checkpoint), "--tasks", f"single_double_quote,indent_for,{user}",
            "--split", "test", "--n", "8", "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    header = next(r for r in rows if r.startswith("task"))
    assert header.split() == ["task", "n", "task", "loss", "two-way", "accuracy"]
    assert any(r.startswith("single_double_quote") and r.split()[1] == "8" for r in rows)
    assert "truncated to n_ctx" in result.stdout  # the checkpoint's n_ctx is 48
    doc = json.loads(out.read_text())
    assert doc["split"] == "test"
    by_task = {r["task"]: r for r in doc["results"]}
    assert set(by_task) == {"single_double_quote", "indent_for", str(user)}
    m = by_task["indent_for"]["metrics"]
    assert m["n"] == 8 and 0.0 <= m["accuracy"] <= 1.0 and m["task_loss"] > 0
    assert m["n_truncated"] > 0
    assert by_task[str(user)]["source"] == "jsonl"


def test_eval_reports_inexpressible_tasks_in_the_table(small_checkpoint, tmp_path):
    out = tmp_path / "eval.json"
    args = ["eval", str(small_checkpoint), "--tasks", "single_double_quote,with_open",
            "--n", "4", "--json", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    quote_row = next(r for r in result.stdout.splitlines() if r.startswith("single_double"))
    assert "not expressible: " in quote_row and "'\")'" in quote_row
    by_task = {r["task"]: r for r in json.loads(out.read_text())["results"]}
    assert by_task["single_double_quote"]["metrics"] is None
    assert by_task["with_open"]["metrics"]["n"] == 4  # `r` and `w` are byte tokens


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no_such_task"], "unknown task 'no_such_task'"),
        (["show", "for_while", "--split", "dev"], "unknown split 'dev'"),
        (["show", "for_while", "--n", "0"], "--n must be >= 1"),
        (["eval", "/nonexistent/ckpt", "--tasks", "for_while"], "does not exist"),
        (["eval", "/nonexistent/ckpt", "--tasks", "nope"], "unknown task 'nope'"),
    ],
)
def test_bad_input_raises_a_user_error(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SparseCircuitsError)
    assert message in str(result.exception)


def test_the_sparsecircuits_command_turns_a_user_error_into_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "tasks", "show", "no_such_task"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown task 'no_such_task'")
    assert len(proc.stderr.strip().splitlines()) == 1
