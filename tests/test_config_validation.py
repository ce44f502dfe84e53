"""Every numeric config value is checked (type, finiteness, range) before any work, and a bad one
is a one-line error naming the field and what it accepts (issue 10, F1/F2)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.cli import _mount, app
from sparsecircuits.config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    Range,
    RunConfig,
    SparsityConfig,
    TrainConfig,
    load_config,
    numeric_fields,
)
from sparsecircuits.errors import CircuitError, ConfigError

runner = CliRunner()
SECTION_CLASSES = {
    "model": ModelConfig,
    "sparsity": SparsityConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


@pytest.fixture(scope="module", autouse=True)
def mounted():
    if "train" not in {c.name for c in app.registered_commands}:
        _mount()


def _out_of_range(bounds: Range, kind: type) -> list:
    """Values just outside each end of `bounds`, plus non-finite ones for a float field and a
    non-integer for an int field."""
    step = 1 if kind is int else 1e-6
    bad = []
    if bounds.ge is not None:
        bad.append(bounds.ge - step)
    if bounds.gt is not None:
        bad.append(bounds.gt)
    if bounds.le is not None:
        bad.append(bounds.le + step)
    if bounds.lt is not None:
        bad.append(bounds.lt)
    return bad + ([math.nan, math.inf, -math.inf] if kind is float else [1.5])


def _cases(cls: type, prefix: str):
    for name, (kind, bounds) in numeric_fields(cls).items():
        for value in _out_of_range(bounds or Range(), kind):
            yield f"{prefix}{name}", value


def _all_classes():
    yield from ((f"{section}.", cls) for section, cls in SECTION_CLASSES.items())
    yield "", PruneConfig


def test_the_sections_listed_here_are_all_of_runconfig():
    assert {f.name for f in dataclasses.fields(RunConfig)} == set(SECTION_CLASSES)


@pytest.mark.parametrize("prefix,cls", list(_all_classes()), ids=lambda v: str(v))
def test_every_numeric_field_declares_its_range(prefix, cls):
    missing = [f"{prefix}{n}" for n, (_, bounds) in numeric_fields(cls).items() if bounds is None]
    assert not missing, f"numeric config fields without a Range: {missing}"
    assert numeric_fields(cls)  # the annotations were read at all


RUN_CASES = [c for prefix, cls in _all_classes() if prefix for c in _cases(cls, prefix)]


@pytest.mark.parametrize("key,value", RUN_CASES, ids=lambda v: str(v))
def test_an_out_of_range_run_value_names_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", {key: value})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(key + " must be"), message


@pytest.mark.parametrize("key,value", list(_cases(PruneConfig, "")), ids=lambda v: str(v))
def test_an_out_of_range_prune_value_names_the_option(key, value):
    with pytest.raises(CircuitError, match=rf"^{key} must be"):
        PruneConfig().replace(**{key: value})


def test_defaults_and_presets_pass():
    for preset in ("tiny", "demo", "frontier"):
        load_config(preset)
    PruneConfig().validate()


def test_range_messages_say_what_is_allowed():
    with pytest.raises(ConfigError, match=r"^optim\.beta1 must be in \[0, 1\), got 2"):
        load_config("tiny", {"optim.beta1": 2})
    with pytest.raises(ConfigError, match=r"^model\.norm_eps must be in \(0, 1\], got -1"):
        load_config("tiny", {"model.norm_eps": -1})
    with pytest.raises(ConfigError, match=r"^train\.seed must be an integer in \[0, 9223372036854775807\]"):
        load_config("tiny", {"train.seed": 10**23})


# The cases, through the real `train` command: each fails before any data or output.
@pytest.mark.parametrize(
    "override,key",
    [
        ("optim.lr=nan", "optim.lr"),
        ("optim.beta1=2", "optim.beta1"),
        ("model.norm_eps=-1", "model.norm_eps"),
        ("optim.eps=inf", "optim.eps"),
        ("optim.weight_decay=-1", "optim.weight_decay"),
        ("train.seed=99999999999999999999999", "train.seed"),
        ("train.threads=100000", "train.threads"),
        ("optim.lr=" + "9" * 400, "optim.lr"),
        ("sparsity.min_per_node=abc", "sparsity.min_per_node"),
    ],
)
def test_train_refuses_a_bad_value_before_any_work(tmp_path, override, key):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "-c", "tiny", "--out", str(out), "--set", override])
    assert isinstance(result.exception, ConfigError), result.output
    assert key in str(result.exception)
    assert len(str(result.exception)) < 200
    assert not out.exists()


@pytest.mark.parametrize(
    "option,value,name",
    [
        ("--set", "lr=nan", "lr"),
        ("--set", "beta1=2", "beta1"),
        ("--set", "k_coef=-1", "k_coef"),
        ("--set", "steps=abc", "steps"),
        ("--set", "tie_qk=maybe", "tie_qk"),
        ("--seed", "99999999999999999999999", "seed"),
        ("--target-loss", "nan", "target_loss"),
    ],
)
def test_prune_refuses_a_bad_value(tiny_run, tmp_path, option, value, name):
    args = ["prune", str(tiny_run), "--task", "single_double_quote", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, option, value])
    assert isinstance(result.exception, CircuitError), result.output
    assert str(result.exception).startswith(f"{name} must be")


def test_the_real_command_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "train", "-c", "tiny",
         "--out", str(tmp_path / "run"), "--set", "optim.lr=nan"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "error: optim.lr must be a finite number > 0, got nan\n"


@pytest.mark.parametrize("device", ["foo", "cuda:x", "cuda:²"])
def test_a_bad_device_name_is_refused_before_loading(tiny_run, tmp_path, device):
    args = ["prune", str(tiny_run), "--task", "single_double_quote", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--device", device])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith("--device must be 'cpu', 'cuda' or 'cuda:N'")
