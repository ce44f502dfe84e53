"""Which task tokens the graph's embedding band shows (`viewer.graph.task_tokens`)."""

from __future__ import annotations

import torch

from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.viewer.graph import task_tokens

# Token ids of a made-up vocabulary: two opening quotes, their candidates, and code tokens.
SINGLE, DOUBLE, CLOSE_SINGLE, CLOSE_DOUBLE = 1, 2, 3, 4
PRINT, PAREN, NAME, NEWLINE, PAD = 10, 11, 12, 13, 0


def quote_batch() -> TaskBatch:
    """Pairs of contexts that differ only in the opening quote (like single_double_quote)."""
    stems = [[PRINT, PAREN], [NAME, PAREN, NEWLINE, PRINT, PAREN], [NEWLINE, NAME, PAREN]]
    rows, labels = [], []
    for stem in stems:
        for label, quote in ((0, DOUBLE), (1, SINGLE)):
            rows.append(stem + [quote, NAME, NAME])
            labels.append(label)
    width = max(map(len, rows))
    tokens = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    label = torch.tensor(labels)
    return TaskBatch(
        tokens=tokens,
        lengths=torch.tensor([len(r) for r in rows]),
        correct_id=torch.where(label == 0, CLOSE_DOUBLE, CLOSE_SINGLE),
        wrong_id=torch.where(label == 0, CLOSE_SINGLE, CLOSE_DOUBLE),
        label=label,
    )


# (token, read channel, weight): the code tokens have the strongest rows, as in the demo model.
EMBED = [
    (PRINT, 0, 3.0), (PRINT, 1, -2.5), (PAREN, 0, 2.8), (NAME, 1, 2.6), (NEWLINE, 0, 2.2),
    (SINGLE, 0, 0.4), (DOUBLE, 1, -0.3), (PAD, 0, 5.0),
]


def test_tokens_that_tell_the_classes_apart_come_before_strong_shared_ones():
    shown, note = task_tokens(EMBED, [CLOSE_SINGLE, CLOSE_DOUBLE], quote_batch())
    assert shown == [SINGLE, DOUBLE]  # shared tokens (and the padding id) are not shown
    assert "tell the classes apart" in note


def test_candidates_in_the_contexts_come_first():
    embed = EMBED + [(CLOSE_DOUBLE, 1, 0.1)]
    shown, note = task_tokens(embed, [CLOSE_SINGLE, CLOSE_DOUBLE], quote_batch())
    assert shown[0] == CLOSE_DOUBLE  # a candidate with a row into the reads
    assert CLOSE_SINGLE not in shown  # no row into the circuit's reads: nothing to draw
    assert set(shown[1:]) == {SINGLE, DOUBLE}
    assert note.startswith("the candidate and 2 context tokens")


def test_without_examples_the_strongest_rows_are_shown_up_to_the_limit():
    shown, note = task_tokens(EMBED, [], None, limit=3)
    assert shown == [PRINT, PAD, PAREN]  # sum of |weight| over reads: 5.5, 5.0, 2.8
    assert "strongest rows" in note and "(of 7 task tokens)" in note


def test_paths_are_shown_relative_to_the_root_or_by_name(tmp_path):
    from sparsecircuits.viewer.graph import shown_path

    assert shown_path(tmp_path / "models" / "demo" / "checkpoint", tmp_path) == "models/demo"
    assert shown_path("models/demo", tmp_path) == "models/demo"
    assert shown_path(tmp_path.parent / "elsewhere" / "run" / "checkpoint", tmp_path) == "run"


def test_the_report_names_the_model_relative_to_where_it_is_made(artifacts, handmade,
                                                                 monkeypatch):
    import json

    from sparsecircuits.viewer.node_stats import StatsConfig
    from sparsecircuits.viewer.report import report_data

    monkeypatch.chdir(artifacts)
    data = report_data(handmade, stats=StatsConfig(windows=4, top_k=2), n=8)
    assert data["view"]["model"] == "runs/tiny"
    assert data["view"]["circuit"]["model_path"] == "runs/tiny"
    assert str(artifacts.resolve()) not in json.dumps(data)  # no path of this machine at all
