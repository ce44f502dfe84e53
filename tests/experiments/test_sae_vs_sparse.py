"""`experiment sae-vs-sparse` end to end on the tiny run and a tiny SAE trained on it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.errors import ConfigError, SAEError
from sparsecircuits.experiments.sae_vs_sparse import SAEVsSparse, run_sae_vs_sparse
from sparsecircuits.sae.config import SAETrainConfig
from sparsecircuits.sae.sae_file import load_sae

SMALL = PruneConfig(loss="two_way", steps=4, train_size=32, val_size=16, test_size=16,
                    mean_windows=4, batch_size=16, target_loss=5.0)  # fmt: skip
SAE_OPTIONS = SAETrainConfig(k=4, expansion=2, tokens=256 * 3, batch_size=256, buffer_windows=4,
                             dead_tokens=512, warmup_steps=1)  # fmt: skip
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def two_saes(tiny_run, tmp_path_factory):
    """Tiny SAEs at two consecutive residual points of the tiny model (3 steps each)."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.sae.trainer import train_sae

    tiny_loaded = load_checkpoint(tiny_run)

    out = []
    for point in ("0.resid_post", "1.resid_post"):
        target = tmp_path_factory.mktemp(f"sae-{point}")
        train_sae(tiny_loaded, SAE_OPTIONS.replace(location=point), target, progress=False)
        out.append(target)
    return tuple(out)


@pytest.fixture(scope="module")
def result(tiny_run, two_saes, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae-vs-sparse")
    exp = SAEVsSparse(sparse=tiny_run, dense=tiny_run, saes=two_saes, prune=SMALL,
                      edge_examples=8)  # fmt: skip
    return out, run_sae_vs_sparse(exp, out, progress=False)


def test_writes_results_table_and_figure(result):
    out, results = result
    assert json.loads((out / "results.json").read_text())["rows"] == json.loads(
        json.dumps(results["rows"])
    )
    assert (out / "sae_vs_sparse.png").read_bytes()[:4] == PNG
    table = (out / "table.md").read_text()
    assert "| weight-sparse |" in table and "| dense + SAEs |" in table
    assert "consecutive SAE points" in table  # the edge rule is stated


def test_sae_row_counts_units_and_edges_consistently(result, two_saes):
    _, results = result
    row = results["rows"]["dense + SAEs"]
    pool = sum(load_sae(p).sae.d_sae + 1 for p in two_saes)  # latents + one error node each
    assert row["unit_pool"] == pool
    assert row["units"] == len(row["nodes"]) == row["latents"] + row["error_nodes"]
    per = row["units_per_point"]
    assert list(per) == ["0.resid_post", "1.resid_post"]
    kept = [per[p]["latents"] + per[p]["error"] for p in per]
    assert row["edge_pairs"] == kept[0] * kept[1]
    assert row["edges_thr"] <= row["edges"] <= row["edge_pairs"]


def test_both_rows_are_validated_on_test(result):
    _, results = result
    for row in results["rows"].values():
        for key in ("test_full_model", "test_sufficiency", "test_necessity", "test_all_ablated"):
            assert isinstance(row[key], float)
        assert row["sufficient"] == (row["test_sufficiency"] <= SMALL.target_loss)


def test_refuses_two_saes_at_one_point_and_bad_options(tiny_run, two_saes, tmp_path):
    exp = SAEVsSparse(sparse=tiny_run, dense=tiny_run, saes=(two_saes[0], two_saes[0]),
                      prune=SMALL)  # fmt: skip
    with pytest.raises(SAEError, match="two SAEs at 0.resid_post"):
        run_sae_vs_sparse(exp, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="errors"):
        SAEVsSparse(errors="dropped").validate()
    with pytest.raises(ConfigError, match="resample"):
        SAEVsSparse(prune=SMALL.replace(ablation="resample")).validate()
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--errors", "dropped"], "errors must be one of node, kept"),
        (["--edge-threshold", "2"], "edge threshold must be in [0, 1]"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "experiment", "sae-vs-sparse",
         "--out", str(tmp_path / "x"), *args], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
