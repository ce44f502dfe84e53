"""Bad values given to `train` and `sample` are one-line errors, and a diverging run never
writes a checkpoint of broken weights (issue 10, F2 and F5)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.cli import _mount, app
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.train.sampling import generate_text

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def mounted():
    if "sample" not in {c.name for c in app.registered_commands}:
        _mount()


def test_a_diverging_run_stops_without_saving_its_broken_weights(tiny_config_file, tmp_path):
    out = tmp_path / "run"
    # An absurd learning rate: weights of 1e30 overflow the activations within a few steps.
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "train", "-c", str(tiny_config_file),
         "--out", str(out), "--no-progress", "--set", "optim.lr=1e30",
         "--set", "train.checkpoint_every=1"],
        capture_output=True, text=True, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"error: training diverged at step (\d+): (.+) is (nan|inf|-inf); .*", last)
    assert match, last
    step = int(match[1])
    if step > 1:  # the steps before it were saved, and only those
        loaded = load_checkpoint(out)
        assert loaded.meta["step"] == step - 1
        assert all(bool(torch.isfinite(p).all()) for p in loaded.model.parameters())
        assert math.isfinite(loaded.meta["val_loss"] or 0.0)
    else:
        assert not (out / "checkpoint").exists()


@pytest.mark.parametrize(
    "option,value,named",
    [
        ("--seed", "99999999999999999999999", "--seed"),
        ("--seed", "-1", "--seed"),
        ("--top-k", "0", "--top-k"),
        ("--temperature", "nan", "--temperature"),
        ("--temperature", "-1", "--temperature"),
        ("--temperature", "inf", "--temperature"),
        ("--tokens", "0", "--tokens"),
    ],
)
def test_sample_refuses_a_bad_setting(tiny_run, option, value, named):
    result = runner.invoke(app, ["sample", str(tiny_run), option, value])
    assert isinstance(result.exception, SparseCircuitsError), result.output
    assert str(result.exception).startswith(f"{named} must be")


def test_sample_with_good_settings_still_works(tiny_run):
    result = runner.invoke(app, ["sample", str(tiny_run), "--tokens", "3", "--seed", "7",
                                 "--top-k", "1", "--temperature", "0.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("def ")


def test_generation_checks_its_settings_for_every_caller(tiny_run):
    loaded = load_checkpoint(tiny_run)
    with pytest.raises(SparseCircuitsError, match="--seed"):
        generate_text(loaded, "def ", 3, 0.0, None, 2**64)


def test_eval_refuses_zero_batches(tiny_run):
    result = runner.invoke(app, ["eval", str(tiny_run), "--batches", "0"])
    assert isinstance(result.exception, SparseCircuitsError), result.output
    assert str(result.exception) == "--batches must be >= 1, got 0"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_train_refuses_a_stop_loss_that_is_not_a_number(tmp_path, value):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", "tiny", "--out", str(out), "--stop-below", value])
    assert isinstance(result.exception, SparseCircuitsError), result.output
    assert str(result.exception).startswith("--stop-below must be a finite number")
    assert not out.exists()
