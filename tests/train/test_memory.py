"""The up-front memory estimate: exact parameter counts, and a run that cannot fit is refused
with one line before any data is prepared (issue 10, F3)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sparsecircuits.cli import _mount, app
from sparsecircuits.config import ModelConfig
from sparsecircuits.errors import ConfigError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.memory import (
    SKIP_ENV,
    check_training_memory,
    estimate_training_memory,
    parameter_count,
)

GIB = 2**30


@pytest.fixture(scope="module", autouse=True)
def mounted():
    if "train" not in {c.name for c in app.registered_commands}:
        _mount()


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"n_layer": 3, "d_model": 48, "d_head": 16, "vocab_size": 300},
        {"positional": "learned", "n_ctx": 32},
        {"attention_sink": False, "bigram_table": False, "mlp_ratio": 2},
    ],
)
def test_parameter_count_matches_the_model(shape):
    cfg = ModelConfig(**shape)
    assert parameter_count(cfg) == sum(p.numel() for p in GPT(cfg).parameters())


def test_attention_scores_grow_with_the_square_of_the_context():
    short = estimate_training_memory(ModelConfig(n_ctx=1000), batch=1)
    long = estimate_training_memory(ModelConfig(n_ctx=10_000), batch=1)
    assert long.attention_transient > 90 * short.attention_transient
    assert long.largest() in ("attention scores", "activations")


def test_a_run_that_fits_passes_and_one_that_does_not_is_refused(monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    check_training_memory(ModelConfig(), 8, 1, available=64 * GIB)
    with pytest.raises(ConfigError, match=r"needs about .* GiB .* 1\.0 GiB is available"):
        check_training_memory(ModelConfig(n_ctx=20_000), 1, 1, available=1 * GIB)
    # Processes on one machine share its memory.
    need = estimate_training_memory(ModelConfig(), 8).total
    check_training_memory(ModelConfig(), 8, 1, available=need + 1)
    with pytest.raises(ConfigError):
        check_training_memory(ModelConfig(), 8, 2, available=need + 1)


def test_the_check_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(SKIP_ENV, "0")
    check_training_memory(ModelConfig(n_ctx=20_000), 1, 1, available=1 * GIB)


def test_train_refuses_a_context_that_cannot_fit_before_preparing_data(tmp_path, monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    out = tmp_path / "run"
    # Attention scores alone would be 4 heads x 10^12 floats: no machine has 16 TB.
    args = ["train", "-c", "tiny", "--out", str(out), "--set", "model.n_ctx=1000000",
            "--set", "train.batch_size=1", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert "memory" in str(result.exception) and "model.n_ctx" in str(result.exception)
    assert not (tmp_path / "cache").exists()  # refused before any data preparation
    assert not out.exists()


def test_a_container_limit_counts_what_the_group_cannot_drop(tmp_path):
    from sparsecircuits.train.memory import _cgroup_available

    (tmp_path / "memory.max").write_text(f"{8 * GIB}\n")
    (tmp_path / "memory.current").write_text(f"{7 * GIB}\n")
    (tmp_path / "memory.stat").write_text(f"anon {2 * GIB}\ninactive_file {5 * GIB}\n")
    assert _cgroup_available(tmp_path) == 6 * GIB  # page cache is reclaimable
    (tmp_path / "memory.max").write_text("max\n")
    assert _cgroup_available(tmp_path) is None
