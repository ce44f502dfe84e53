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
        (["show", "for_while", "--lines", "0"], "--lines must be >= 1"),
        (["eval", "/nonexistent/ckpt", "--device", "foo"], "--device must be 'cpu', 'cuda'"),
        (["eval", "/nonexistent/ckpt", "--device", "cuda:x"], "--device must be 'cpu', 'cuda'"),
        (["eval", "/nonexistent/ckpt", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["eval", "/nonexistent/ckpt", "--n", "0"], "--n must be >= 1"),
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


def _write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _quote_rows(n=12, **extra):
    return [{"context": f'print("item {i}', "correct": '")', "wrong": "')", **extra}
            for i in range(n)]  # fmt: skip


def test_show_prints_a_user_task_metadata(tmp_path):
    path = _write_lines(tmp_path / "ids.jsonl", _quote_rows(source="github", id=7))
    result = runner.invoke(app, ["show", str(path), "--n", "1", "--split", "train"])
    assert result.exit_code == 0, result.output
    assert 'source "github"   id 7' in result.stdout


def test_show_tokenizes_only_the_tail_of_a_huge_context(tmp_path, tokenizer_path):
    from sparsecircuits.tasks.splits import split_of

    big = "x = 1\n" * 400_000 + 'print("a'  # 2.4 MB: tokenized whole, it would cost ~1 GB
    path = _write_lines(tmp_path / "big.jsonl",
                        [{"context": big, "correct": '")', "wrong": "')"}, *_quote_rows(40)])
    args = ["show", str(path), "--n", "40", "--split", split_of([big]),
            "--tokenizer", str(tokenizer_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(399995 lines above)" in result.stdout
    assert " tokens in its last 4096 characters, ending " in result.stdout


SURROGATE = '{"context": "x \\ud800", "correct": "\\")", "wrong": "\')"}'


@pytest.mark.parametrize("command", ["show", "eval"])
def test_a_lone_surrogate_in_a_task_file_is_one_error_naming_the_line(
    command, checkpoint, tmp_path
):
    path = _write_lines(tmp_path / "bad.jsonl", [*_quote_rows(3), SURROGATE, *_quote_rows(2)])
    args = {"show": ["show", str(path), "--checkpoint", str(checkpoint)],
            "eval": ["eval", str(checkpoint), "--tasks", str(path)]}[command]  # fmt: skip
    result = runner.invoke(app, args)
    assert isinstance(result.exception, TaskError), result.output
    assert str(result.exception) == (
        f"{path}: line 4: holds a lone surrogate \\ud800, which is not valid Unicode text"
    )


def test_prune_reports_a_lone_surrogate_in_its_task_file(checkpoint, tmp_path):
    from sparsecircuits.cli import _mount
    from sparsecircuits.cli import app as main_app

    if "prune" not in {c.name for c in main_app.registered_commands}:
        _mount()
    path = _write_lines(tmp_path / "bad.jsonl", [SURROGATE, *_quote_rows(3)])
    result = runner.invoke(
        main_app, ["prune", str(checkpoint), "--task", str(path), "--out", str(tmp_path / "out")]
    )
    assert isinstance(result.exception, TaskError), result.output
    assert "line 1: holds a lone surrogate" in str(result.exception)


def test_eval_refuses_a_task_line_too_long_to_be_one_example(checkpoint, tmp_path):
    huge = {"context": "x = 1\n" * 800_000 + 'print("a', "correct": '")', "wrong": "')"}
    path = _write_lines(tmp_path / "huge.jsonl", [*_quote_rows(5), huge])
    result = runner.invoke(app, ["eval", str(checkpoint), "--tasks", str(path)])
    assert isinstance(result.exception, TaskError), result.output
    assert str(result.exception) == f"{path}: line 6 is longer than 4 MiB (one example per line)"
