"""The quote-closing task mined from real code with `tokenize`."""

from __future__ import annotations

import ast
import io
import json
import tokenize

import pytest
import typer
from typer.testing import CliRunner

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.cli import app as tasks_app
from sparsecircuits.tasks.jsonl_task import JsonlTask
from sparsecircuits.tasks.mined_quotes import mine_quotes, split_files, string_closings

SOURCE = '''x = "double"
y = 'single' + "it's"
z = f"fmt {x}" + rb'raw'
doc = """triple
quoted"""
w = 'continued \\
line'
print('a', "b")
'''


def test_string_closings_finds_single_line_non_f_strings_only():
    found = [(c.line, c.col, c.quote, c.prefix) for c in string_closings(SOURCE)]
    assert found == [(1, 11, '"', ""), (2, 11, "'", ""), (2, 20, '"', ""), (3, 23, "'", "rb"),
                     (8, 8, "'", ""), (8, 13, '"', "")]  # fmt: skip
    for c in string_closings(SOURCE):
        assert SOURCE[c.offset] == c.quote


def test_a_file_tokenize_rejects_gives_no_closings():
    assert string_closings("x = 'a'\n  y = (\n") == []


def _files_by_name(loaded):
    # The test corpus's test split is a single file: mine its train split (the mechanics are
    # the same; the command defaults to test).
    return dict(split_files(loaded, "train"))


def _string_token_ending_at(text: str, line: int, col: int) -> tokenize.TokenInfo | None:
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and tok.end == (line, col + 1):
            return tok
    return None


@pytest.fixture(scope="module")
def tiny_loaded(tiny_run):
    return load_checkpoint(tiny_run)


@pytest.mark.parametrize("suffix", ["", ")"])
def test_every_context_ends_just_before_a_closing_quote(tiny_loaded, suffix):
    files = _files_by_name(tiny_loaded)
    mined = mine_quotes(files.items(), tiny_loaded.tokenizer, n=64, suffix=suffix)
    assert mined.examples and mined.per_class[f'"{suffix}'] == mined.per_class[f"'{suffix}"]
    for ex in mined.examples:
        m = ex.metadata
        text = files[m["source"]]
        lines = text.split("\n")  # tokenize's lines: "\n" ends a line, nothing else does
        offset = sum(len(x) + 1 for x in lines[: m["line"] - 1]) + m["col"]
        assert text[:offset].endswith(ex.context)  # the file's own text, up to the quote
        assert text[offset:].startswith(ex.correct + ex.continuation)
        tok = _string_token_ending_at(text, m["line"], m["col"])
        assert tok is not None, ex.context[-40:]  # tokenize: a string literal closes here
        body = tok.string[len(m["prefix"]) :]
        assert body[0] == ex.correct[0] and body[:3] not in ('"""', "'''")
        assert "f" not in m["prefix"].lower() and tok.start[0] == tok.end[0]
        ast.literal_eval(tok.string)  # a complete literal
        assert ex.wrong == ("'" if ex.correct[0] == '"' else '"') + suffix


def test_the_written_file_is_a_jsonl_task_that_passes_the_tokenizer_check(tiny_run, tmp_path):
    out = tmp_path / "quotes.jsonl"
    app = typer.Typer()
    app.add_typer(tasks_app, name="tasks")
    r = CliRunner().invoke(app, ["tasks", "mine-quotes", str(tiny_run), "--out", str(out),
                                 "--n", "40", "--split", "train"])  # fmt: skip
    assert r.exit_code == 0, r.output
    task = JsonlTask(out)
    assert 0 < len(task.examples) <= 40
    assert {ex.correct for ex in task.examples} == {'"', "'"}
    line = json.loads(out.read_text().splitlines()[0])
    assert {"source", "line", "col", "prefix", "continuation", "label"} <= set(line)
    loaded = load_checkpoint(tiny_run)
    from sparsecircuits.tasks.base import SplitSizes

    splits = task.splits(SplitSizes(1, 1, 1), tokenizer=loaded.tokenizer)  # check: no drops
    assert sum(len(splits.get(s)) for s in ("train", "val", "test")) == len(task.examples)


def test_bad_requests_are_one_line_errors(tiny_run, tiny_loaded, tmp_path):
    files = _files_by_name(tiny_loaded)
    with pytest.raises(TaskError, match="not single tokens") as exc:
        mine_quotes(files.items(), tiny_loaded.tokenizer, n=8, suffix=")zq#~")
    assert "\n" not in str(exc.value)
    app = typer.Typer()
    app.add_typer(tasks_app, name="tasks")
    for args, message in [
        (["--out", str(tmp_path / "q.txt")], "must end in .jsonl"),
        (["--out", str(tmp_path / "q.jsonl"), "--n", "0"], "--n"),
        (["--out", str(tmp_path / "q.jsonl"), "--split", "dev"], "split"),
    ]:
        r = CliRunner().invoke(app, ["tasks", "mine-quotes", str(tiny_run), *args])
        assert isinstance(r.exception, TaskError), (args, r.output)
        assert message in str(r.exception) and "\n" not in str(r.exception)
    assert not (tmp_path / "q.jsonl").exists()
