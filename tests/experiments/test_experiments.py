"""The sparse-vs-dense and frontier experiments, end to end on tiny real runs."""

from __future__ import annotations

import json
import math
import os

import pytest
from typer.testing import CliRunner

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.cli import _mount, app
from sparsecircuits.errors import CheckpointError, ConfigError
from sparsecircuits.experiments.circuit_sizes import SizePoint, geomean_edges
from sparsecircuits.experiments.frontier import Frontier, run_frontier
from sparsecircuits.experiments.runs import train_or_reuse
from sparsecircuits.experiments.sparse_vs_dense import SparseVsDense, run_sparse_vs_dense
from tests.conftest import TEST_DATA, TINY_THREADS

TASKS = ("single_double_quote", "for_while")
SMALL_PRUNE = PruneConfig(loss="two_way", steps=15, train_size=48, val_size=32, test_size=32,
                          mean_windows=4, batch_size=16)  # fmt: skip
PNG = b"\x89PNG"


def tiny_overrides(data_cache) -> dict:
    """The tiny preset on the test corpus, at tiny_config's pinned thread count."""
    return {"data.cache_dir": str(data_cache), "train.threads": TINY_THREADS, **TEST_DATA}


@pytest.fixture(scope="module")
def svd(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("svd")
    exp = SparseVsDense(config="tiny", overrides=tiny_overrides(data_cache),
                        tasks=TASKS, targets=(5.0, 0.7), capable_loss=10.0, prune=SMALL_PRUNE,
                        tolerance=0.5, match_every=5)  # fmt: skip
    return exp, out, run_sparse_vs_dense(exp, out, progress=False)


def test_dense_model_is_stopped_at_the_first_evaluation_within_tolerance(svd):
    exp, out, results = svd
    sparse, dense = results["models"]["sparse"], results["models"]["dense"]
    assert sparse["weight_fraction"] < 1 and dense["weight_fraction"] == 1.0
    bound = sparse["val_loss"] * (1 + exp.tolerance)
    assert dense["val_loss"] <= bound
    evals = [json.loads(line) for line in (out / "dense" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "val_loss" in r]
    assert evals[-1]["step"] == dense["steps"] and all(r["val_loss"] > bound for r in evals[:-1])
    assert results["match"]["relative_gap"] == pytest.approx(dense["val_loss"] / sparse["val_loss"] - 1)
    assert results["match"]["matched"] == (abs(results["match"]["relative_gap"]) <= exp.tolerance)


def test_every_capable_task_is_pruned_in_both_models_at_every_target(svd):
    exp, out, results = svd
    pruned = [t["task"] for t in results["tasks"] if t.get("pruned")]
    assert pruned and set(pruned) <= set(TASKS)
    for model in ("sparse", "dense"):
        got = {(p["task"], p["target"]) for p in results["points"][model]}
        assert got == {(t, x) for t in pruned for x in exp.targets}
        for p in results["points"][model]:
            assert p["reached"] == (p["val_loss"] <= p["target"])
    # Looser target, same masks: never a bigger circuit.
    for model in ("sparse", "dense"):
        by = {(p["task"], p["target"]): p for p in results["points"][model]}
        for t in pruned:
            assert by[(t, 5.0)]["nodes"] <= by[(t, 0.7)]["nodes"] or not by[(t, 0.7)]["reached"]


def test_outputs_are_written_and_the_ratio_is_of_geometric_means(svd):
    exp, out, results = svd
    assert (out / "figure2.png").read_bytes()[:4] == PNG
    # Strict JSON: a mean over no task (NaN in memory) is written as null.
    written = json.loads((out / "results.json").read_text(), parse_constant=pytest.fail)
    for target, row in results["summary"].items():
        for key, value in row.items():
            want = None if isinstance(value, float) and math.isnan(value) else value
            assert written["summary"][target][key] == want
    table = (out / "table.md").read_text()
    assert "dense / sparse" in table and "Paper: ~16x" in table
    for row in results["summary"].values():
        if row["tasks"]:
            assert row["ratio"] == pytest.approx(row["dense"] / row["sparse"])


def test_running_again_reuses_the_trained_models_and_their_circuit_sizes(svd):
    exp, out, first = svd
    before = {m: os.stat(out / m / "checkpoint" / "model.safetensors").st_mtime_ns
              for m in ("sparse", "dense")}  # fmt: skip
    # A cached size is what a second run reports (so it did not prune again) ...
    task = next(t["task"] for t in first["tasks"] if t.get("pruned"))
    cache = out / "sparse" / "sizes" / f"{task}.json"
    doc = json.loads(cache.read_text())
    doc["points"][0]["edges"] = 12345
    cache.write_text(json.dumps(doc))
    again = run_sparse_vs_dense(exp, out, progress=False)
    after = {m: os.stat(out / m / "checkpoint" / "model.safetensors").st_mtime_ns
             for m in ("sparse", "dense")}  # fmt: skip
    assert before == after
    assert [p for p in again["points"]["sparse"] if p["edges"] == 12345]
    assert again["points"]["dense"] == first["points"]["dense"]
    # ... also for fewer targets (the same mask training, cut at fewer places) ...
    fewer = SparseVsDense(**{**exp.__dict__, "targets": (exp.targets[0],)})
    subset = run_sparse_vs_dense(fewer, out, progress=False)
    assert {p["target"] for p in subset["points"]["sparse"]} == {exp.targets[0]}
    assert doc["points"][0]["target"] == exp.targets[0]  # the tampered point is kept
    assert [p for p in subset["points"]["sparse"] if p["edges"] == 12345]
    # ... unless what it depends on changed: a target it has not cut at prunes again.
    other = SparseVsDense(**{**exp.__dict__, "targets": (*exp.targets, 0.6)})
    fresh = run_sparse_vs_dense(other, out, progress=False)
    assert not [p for p in fresh["points"]["sparse"] if p["edges"] == 12345]


def test_a_trained_pair_is_compared_without_training(svd, tmp_path):
    exp, out, first = svd
    given = SparseVsDense(**{**exp.__dict__, "sparse_model": out / "sparse",
                             "dense_model": out / "dense"})  # fmt: skip
    results = run_sparse_vs_dense(given, tmp_path, progress=False)
    assert not (tmp_path / "sparse" / "checkpoint").exists()  # nothing was trained
    for model in ("sparse", "dense"):
        assert results["models"][model]["val_loss"] == first["models"][model]["val_loss"]
        assert results["points"][model] == first["points"][model]
    assert results["match"]["relative_gap"] == pytest.approx(first["match"]["relative_gap"])
    swapped = SparseVsDense(**{**given.__dict__, "sparse_model": out / "dense",
                               "dense_model": out / "sparse"})  # fmt: skip
    with pytest.raises(ConfigError, match="must be weight-sparse"):
        run_sparse_vs_dense(swapped, tmp_path / "swapped", progress=False)


def test_a_run_directory_of_another_config_is_refused(tiny_config, tiny_run):
    other = tiny_config.replace(**{"train.steps": tiny_config.train.steps + 1})
    with pytest.raises(CheckpointError, match="different config"):
        train_or_reuse(other, tiny_run, progress=False)


def test_geomean_needs_every_task_to_reach_the_target():
    pts = [SizePoint("a", 0.3, True, 3, 4, 0.2, 0.2, 1.0),
           SizePoint("b", 0.3, True, 5, 16, 0.2, 0.2, 1.0),
           SizePoint("c", 0.3, False, 9, 99, 0.5, 0.5, 0.6)]  # fmt: skip
    assert geomean_edges(pts, ["a", "b"], 0.3) == pytest.approx(8.0)
    assert math.isnan(geomean_edges(pts, ["a", "c"], 0.3))
    assert math.isnan(geomean_edges(pts, [], 0.3))


def test_frontier_trains_each_width_and_fraction_and_plots(data_cache, tmp_path):
    exp = Frontier(config="tiny", overrides=tiny_overrides(data_cache),
                   widths=(32, 48), fractions=(0.5,), tasks=TASKS, target=5.0,
                   prune=SMALL_PRUNE)  # fmt: skip
    results = run_frontier(exp, tmp_path, progress=False)
    assert [m["name"] for m in results["models"]] == ["d32_f0.5", "d48_f0.5"]
    for m in results["models"]:
        cfg = ckpt.read_config(ckpt.resolve(tmp_path / m["name"]))
        assert (cfg.model.d_model, cfg.sparsity.weight_fraction) == (m["d_model"], 0.5)
        assert m["nonzeros"] > 0 and not math.isnan(m["geomean_edges"])
    assert (tmp_path / "figure3.png").read_bytes()[:4] == PNG


@pytest.mark.parametrize(
    "args, message",
    [
        (["--targets", "0.3,x"], "--targets must be comma-separated numbers"),
        (["--tasks", "no_such_task"], "no_such_task"),
        (["--config", "tiny", "--set", "sparsity.weight_fraction=1.0"], "is dense"),
        (["--sparse", "models/demo"], "give both --sparse and --dense"),
        (["--sparse", "models/demo", "--dense", "no/such/model"], "no/such/model"),
    ],
)
def test_bad_experiment_input_is_a_one_line_error(tmp_path, args, message):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "experiment", "sparse-vs-dense",
         "--out", str(tmp_path / "x"), *args], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_experiment_help_lists_both_commands():
    _mount()
    result = CliRunner().invoke(app, ["experiment", "--help"])
    assert result.exit_code == 0 and "sparse-vs-dense" in result.output and "frontier" in result.output
