"""User tasks from JSONL files run through the same code path as the built-in ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks import get_task
from sparsecircuits.tasks.evaluate import evaluate_tasks, load_task_batch
from sparsecircuits.tasks.jsonl_task import MAX_FILE_BYTES, MAX_LINE_BYTES
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


def test_extra_keys_are_kept_as_metadata(tmp_path):
    path = tmp_path / "with_ids.jsonl"
    rows = [{"context": f"x{i} =", "correct": " 1", "wrong": " 2", "id": i, "source": "me"}
            for i in range(4)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task(str(path)).examples
    assert [dict(ex.metadata) for ex in examples] == [{"id": i, "source": "me"} for i in range(4)]
    assert examples[0].context == "x0 =" and examples[0].label == 0


def test_a_lone_surrogate_is_an_error_naming_its_line(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    good = json.dumps({"context": "x =", "correct": " 1", "wrong": " 2"})
    bad = '{"context": "x \\ud800", "correct": " 1", "wrong": " 2"}'
    meta = '{"context": "y =", "correct": " 1", "wrong": " 2", "note": "\\udfff"}'
    path.write_text("\n".join([good, bad, good, meta]) + "\n")
    with pytest.raises(TaskError) as err:
        get_task(str(path))
    assert str(err.value) == (
        f"{path}: line 2: holds a lone surrogate \\ud800, which is not valid Unicode text; "
        "line 4: holds a lone surrogate \\udfff, which is not valid Unicode text"
    )


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.jsonl"
    good = json.dumps({"context": "x =", "correct": " 1", "wrong": " 2"}).encode()
    path.write_bytes(good + b"\n" + good.replace(b"x", b"\xe9") + b"\n")
    with pytest.raises(TaskError, match="line 2 is not UTF-8 text"):
        get_task(str(path))


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(TaskError, match=r"is larger than the 256 MiB a task file may hold"):
        get_task(str(path))


def test_a_line_over_the_size_bound_is_an_error_naming_it(tmp_path):
    path = tmp_path / "long_line.jsonl"
    good = json.dumps({"context": "x =", "correct": " 1", "wrong": " 2"})
    long = json.dumps({"context": "#" * MAX_LINE_BYTES, "correct": " 1", "wrong": " 2"})
    path.write_text("\n".join([good, good, long, good]) + "\n")
    with pytest.raises(TaskError, match=r"line 3 is longer than 4 MiB"):
        get_task(str(path))


class RecordingTokenizer:
    """The real tokenizer, noting the longest text it is asked to encode."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.tokenizer.encode(text, **kwargs)

    def encode_batch(self, texts, **kwargs):
        self.longest = max([self.longest, *map(len, texts)])
        return self.tokenizer.encode_batch(texts, **kwargs)


def test_a_long_context_is_cut_before_tokenizing_and_keeps_its_last_tokens(tmp_path, tokenizer):
    code = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(8000))  # ~240 KB
    long_ctx = code + 'print("done'
    rows = [{"context": long_ctx, "correct": '")', "wrong": "')"}]
    rows += [{"context": f'print("item {i}', "correct": '")', "wrong": "')"} for i in range(12)]
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task(str(path))
    spy = RecordingTokenizer(tokenizer)
    splits = task.splits(tokenizer=spy)
    split = next(s for s in ("train", "val", "test") if any(len(e.context) > 1000
                                                              for e in splits.get(s)))  # fmt: skip
    assert spy.longest < 10_000  # the boundary check read a tail, not 240 KB
    spy.longest = 0
    batch = load_task_batch(task, spy, split, n_ctx=64)
    longest_token = max(len(t) for t in tokenizer.get_vocab())
    assert spy.longest <= 64 * longest_token + 4096 + 2
    row = [len(e.context) > 1000 for e in splits.get(split)].index(True)
    full = tokenizer.encode(long_ctx, add_special_tokens=False).ids  # the reference: no cut
    assert batch.tokens[row, : batch.lengths[row]].tolist() == full[-64:]
    assert batch.n_truncated >= 1
