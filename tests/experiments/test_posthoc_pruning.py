"""Pruning a dense model after training vs training weight-sparse, on tiny real runs."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.cli import _mount, app
from sparsecircuits.config import ModelConfig, load_config
from sparsecircuits.errors import ConfigError, TaskError
from sparsecircuits.experiments.posthoc_pruning import (
    MODELS,
    PosthocPruning,
    keep_counts,
    magnitude_prune_,
    run_posthoc_pruning,
    sparse_nonzeros,
)
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import sparse_parameters
from tests.conftest import TEST_DATA, TINY_THREADS

SMALL_PRUNE = PruneConfig(loss="two_way", steps=4, train_size=32, val_size=32, test_size=32,
                          mean_windows=4, batch_size=16)  # fmt: skip
PNG = b"\x89PNG"


def test_keep_counts_share_the_budget_exactly_and_evenly():
    numels = [1000, 10, 333, 4096, 7]
    for budget in (0, 1, 17, 999, 2000, sum(numels)):
        counts = keep_counts(numels, budget)
        assert sum(counts) == budget
        for n, c in zip(numels, counts, strict=True):
            assert 0 <= c <= n and abs(c - n * budget / sum(numels)) < 1  # the same fraction
    with pytest.raises(ConfigError, match="cannot keep"):
        keep_counts(numels, sum(numels) + 1)


def test_magnitude_pruning_keeps_exactly_the_budget_and_the_largest_entries():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, n_layer=1, d_model=16, d_head=8, n_ctx=8))
    before = {sp.name: sp.param.detach().clone() for sp in sparse_parameters(model)}
    budget = 1234
    masks = magnitude_prune_(model, budget)
    assert sparse_nonzeros(model) == budget
    for sp in sparse_parameters(model):
        kept, dropped = before[sp.name][masks[sp.name]], before[sp.name][~masks[sp.name]]
        assert torch.equal(sp.param.detach()[~masks[sp.name]], torch.zeros_like(dropped))
        if kept.numel() and dropped.numel():
            assert kept.abs().min() >= dropped.abs().max()


@pytest.fixture(scope="module")
def dense_run(data_cache, tmp_path_factory):
    """The tiny preset trained dense on the test corpus (same tokenizer as tiny_run)."""
    from sparsecircuits.train.trainer import train

    cfg = load_config("tiny", {"data.cache_dir": str(data_cache), "train.threads": TINY_THREADS,
                               "sparsity.weight_fraction": 1.0, **TEST_DATA})  # fmt: skip
    out = tmp_path_factory.mktemp("tiny-dense")
    before = torch.get_num_threads()
    try:
        train(cfg, out, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.slow
def test_posthoc_pruning_end_to_end(tiny_run, dense_run, tmp_path):
    exp = PosthocPruning(sparse=tiny_run, dense=dense_run, tasks=("single_double_quote",),
                         solved_tasks=("single_double_quote", "else_elif"), targets=(5.0,),
                         prune=SMALL_PRUNE, max_finetune_steps=1)  # fmt: skip
    out = tmp_path / "posthoc"
    results = run_posthoc_pruning(exp, out, progress=False)
    sparse_count = sparse_nonzeros(load_checkpoint(tiny_run).model)
    rows = results["models"]
    assert list(rows) == list(MODELS)
    assert rows["dense_pruned"]["nonzeros"] == sparse_count
    assert rows["dense_pruned_finetuned"]["nonzeros"] == sparse_count
    assert rows["sparse"]["nonzeros"] == sparse_count < rows["dense"]["nonzeros"]
    assert results["recipe"]["finetune_steps"] == 1  # the cap (the tiny budget is 2)

    # fine-tuning changed the kept weights but never revived a pruned one
    oneshot = load_checkpoint(out / "dense_pruned").model
    tuned = load_checkpoint(out / "dense_pruned_finetuned").model
    changed = False
    for a, b in zip(sparse_parameters(oneshot), sparse_parameters(tuned), strict=True):
        assert not bool(((a.param == 0) & (b.param != 0)).any()), a.name
        changed |= not torch.equal(a.param, b.param)
    assert changed

    for name, row in rows.items():
        assert 0 <= row["tasks_solved"] <= 2 and set(row["accuracy"]) == set(exp.solved_tasks)
        assert [p["task"] for p in results["points"][name]] == ["single_double_quote"]
    table = (out / "table.md").read_text()
    assert "dense, pruned + fine-tuned" in table and f"{sparse_count:,}" in table
    assert json.loads((out / "results.json").read_text())["recipe"]["budget"] == sparse_count
    assert (out / "posthoc.png").read_bytes()[:4] == PNG

    # a second run reuses the fine-tuned model rather than training it again
    mtime = (out / "dense_pruned_finetuned" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    run_posthoc_pruning(exp, out, progress=False)
    after = (out / "dense_pruned_finetuned" / "checkpoint" / "model.safetensors").stat()
    assert after.st_mtime_ns == mtime


def test_bad_options_are_one_line_errors(tmp_path):
    if "train" not in {c.name for c in app.registered_commands}:
        _mount()
    model = tmp_path / "never-read"  # options are checked before any model is loaded
    base = ["experiment", "posthoc-pruning", "--sparse", str(model), "--dense", str(model),
            "--out", str(tmp_path / "x")]  # fmt: skip
    cases = [
        (["--tasks", "no_such_task"], TaskError, "unknown task"),
        (["--max-finetune-steps", "-1"], ConfigError, "--max-finetune-steps"),
        (["--targets", "0.3,x"], ConfigError, "--targets"),
        (["--finetune-lr-scale", "0"], ConfigError, "--finetune-lr-scale"),
        (["--tasks", ","], ConfigError, "--tasks"),
    ]
    for args, kind, message in cases:
        r = CliRunner().invoke(app, [*base, *args])
        assert isinstance(r.exception, kind), (args, r.output, r.exception)
        assert message in str(r.exception) and "\n" not in str(r.exception)
    assert not (tmp_path / "x").exists()
