"""User tasks from JSONL files run through the same code path as the built-in ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks import get_task
from sparsecircuits.tasks.evaluate import evaluate_tasks
from sparsecircuits.tasks.splits import split_of


def write_quote_task(path: Path, n: int = 40) -> Path:
    lines = []
    for i in range(n):
        q = '"' if i % 2 else "'"
        other = "'" if q == '"' else '"'
        lines.append(json.dumps({"context": f"print({q}item {i}", "correct": q + ")",
                                 "wrong": other + ")"}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n\n")
    return path


def test_jsonl_examples_are_split_by_context_hash_and_all_kept(tmp_path):
    task = get_task(str(write_quote_task(tmp_path / "quotes.jsonl")))
    assert task.source == "jsonl" and task.name.endswith("quotes.jsonl")
    splits = task.splits()
    everything = splits.train + splits.val + splits.test
    assert len(everything) == 40
    for split in ("train", "val", "test"):
        assert all(split_of([ex.context]) == split for ex in splits.get(split))
    # Without a label key, `")` (which sorts first) is class 0, as in single_double_quote.
    assert {ex.label for ex in everything if ex.correct == '")'} == {0}
    assert {ex.label for ex in everything if ex.correct == "')"} == {1}


def test_malformed_lines_are_reported_with_their_numbers(tmp_path):
    good = json.dumps({"context": "x", "correct": ":", "wrong": ","})
    lines = [
        good,
        good,
        json.dumps({"context": "x", "correct": ":"}),
        good,
        json.dumps({"context": "x", "correct": ":", "wrong": ":"}),
        json.dumps({"context": 3, "correct": ":", "wrong": ","}),
        "{not json",
        "[1, 2]",
        json.dumps({"context": "x", "correct": ":", "wrong": ",", "label": 2}),
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError) as err:
        get_task(str(path))
    assert str(err.value) == (
        f"{path}: line 3: missing key 'wrong'; line 5: 'correct' and 'wrong' are the same; "
        "line 6: 'context' must be a string; line 7: not JSON; line 8: not a JSON object; "
        "line 9: 'label' must be 0 or 1"
    )


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(TaskError, match="no examples"):
        get_task(str(path))


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(TaskError, match="no such task file"):
        get_task(str(tmp_path / "nope.jsonl"))


def test_jsonl_task_is_evaluated_like_a_builtin_one(tmp_path, tokenizer):
    path = write_quote_task(tmp_path / "quotes.jsonl")
    oracle_id = {q: tokenizer.token_to_id(tokenizer.encode(q + ")").tokens[0]) for q in "\"'"}

    def reads_the_quote(tokens):
        import torch

        logits = torch.zeros(*tokens.shape, tokenizer.get_vocab_size())
        for i, row in enumerate(tokens.tolist()):
            text = tokenizer.decode(row)
            quote = max(("'", '"'), key=text.rfind)
            logits[i, :, oracle_id[quote]] = 5.0  # every position: padding is never read
        return logits

    (result,) = evaluate_tasks(reads_the_quote, [str(path)], tokenizer, split="train")
    assert result.error is None and result.source == "jsonl"
    assert result.metrics.n == len(get_task(str(path)).splits().train)
    assert result.metrics.accuracy == 1.0
