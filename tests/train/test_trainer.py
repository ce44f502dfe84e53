"""Real training runs on a tiny config: checkpoints, resume after a kill, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.errors import CheckpointError
from sparsecircuits.train.sparsity import keep_count, sparse_parameters
from sparsecircuits.train.trainer import train


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecircuits", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_tiny_run_writes_a_complete_checkpoint_and_log(tiny_run):
    ck = tiny_run / "checkpoint"
    assert {p.name for p in ck.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                               "trainer.safetensors", "trainer.json"}
    lines = [json.loads(x) for x in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 21))
    assert {"loss", "lr", "l0", "tokens_per_s"} <= set(lines[0])
    assert any("val_loss" in r for r in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]  # it learns something


def test_sparse_matrices_hold_exactly_their_target(tiny_run):
    loaded = load_checkpoint(tiny_run)
    fraction = loaded.config.sparsity.weight_fraction
    for sp in sparse_parameters(loaded.model):
        nz = int(sp.param.count_nonzero())
        target = keep_count(sp.param.numel(), fraction)
        if sp.param.ndim == 2:
            assert nz == target, sp.name
        else:
            assert nz <= target, sp.name


def test_killed_and_resumed_run_matches_uninterrupted_run(tiny_config, tmp_path):
    cfg = tiny_config.replace(**{"train.steps": 30, "train.checkpoint_every": 3,
                                 "train.threads": 1})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    full = tmp_path / "full"
    train(cfg, full, progress=False)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sparsecircuits", "train", "-c", str(cfg_file),
                             "--out", str(killed), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoint" / "trainer.json"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = json.loads(state.read_text())["step"]
    assert step_at_kill < 30, "the run finished before it could be killed"

    result = cli("train", "-c", str(cfg_file), "--out", str(killed), "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    a = load_file(str(full / "checkpoint" / "model.safetensors"))
    b = load_file(str(killed / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tiny_config, tmp_path):
    cfg = tiny_config.replace(**{"train.steps": 6, "train.batch_size": 4, "train.threads": 1,
                                 "train.checkpoint_every": 6, "train.eval_every": 6})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    single = tmp_path / "single"
    train(cfg, single, progress=False)
    ddp = tmp_path / "ddp"
    torchrun = Path(sys.executable).parent / "torchrun"
    res = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "sparsecircuits",
                          "train", "-c", str(cfg_file), "--out", str(ddp), "--no-progress"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    one = [json.loads(x)["loss"] for x in (single / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x)["loss"] for x in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 6
    assert two == pytest.approx(one, rel=1e-4)


def test_existing_checkpoint_is_never_overwritten_without_resume(tiny_run):
    before = (tiny_run / "checkpoint" / "model.safetensors").read_bytes()
    result = cli("train", "-c", "tiny", "--out", str(tiny_run), "--no-progress")
    assert result.returncode == 2
    assert "already holds a checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tiny_run / "checkpoint" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "model.d_model=40"], "divisible by model.d_head"),
        (["--set", "sparsity.weight_fraction=0"], "weight_fraction must be in (0, 1]"),
        (["--set", "sparsity.weight_fraction=1.5"], "weight_fraction must be in (0, 1]"),
        (["--set", "model.nonsense=3"], "unknown config key 'model.nonsense'"),
        (["--set", "data.sources=/nonexistent/dir"], "/nonexistent/dir"),
        (["-c", "no-such-preset"], "neither a preset"),
    ],
)
def test_bad_input_gives_one_line_error(args, message, tmp_path):
    if args[0] != "-c":
        args = ["-c", "tiny", *args]
    result = cli("train", *args, "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_empty_corpus_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no python here")
    result = cli("train", "-c", "tiny", "--set", f"data.sources={empty}",
                 "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode == 2 and "error:" in result.stderr


@pytest.mark.parametrize("damage", ["truncate_weights", "foreign_config", "bad_json", "wrong_version",
                                    "missing_tokenizer", "wrong_shapes"])
def test_corrupt_or_foreign_checkpoint_is_refused(tiny_run, tmp_path, damage):
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(tiny_run / "checkpoint", ck)
    cfg = json.loads((ck / "config.json").read_text())
    if damage == "truncate_weights":
        data = (ck / "model.safetensors").read_bytes()
        (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "foreign_config":
        (ck / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    elif damage == "bad_json":
        (ck / "config.json").write_text("{not json")
    elif damage == "wrong_version":
        (ck / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    elif damage == "missing_tokenizer":
        (ck / "tokenizer.json").unlink()
    elif damage == "wrong_shapes":
        cfg["run_config"]["model"]["d_model"] = 64
        (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):
        load_checkpoint(ck)
    result = cli("eval", str(ck))
    assert result.returncode == 2 and result.stderr.startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_eval_and_sample_commands(tiny_run):
    result = cli("eval", str(tiny_run), "--batches", "1")
    assert result.returncode == 0, result.stderr
    for text in ("val loss", "nonzeros", "dead MLP neurons", "kurtosis", "0.mlp.fc_in.weight"):
        assert text in result.stdout
    result = cli("sample", str(tiny_run), "--prompt", "def f(x):", "--tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("def f(x):")


def test_resume_refuses_a_different_config(tiny_run, tmp_path):
    result = cli("train", "-c", "tiny", "--set", "train.steps=40", "--out", str(tiny_run),
                 "--resume", "--no-progress")
    assert result.returncode == 2 and "config differs" in result.stderr


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")


def test_stop_below_ends_the_run_at_the_first_evaluation_that_reaches_it(tiny_config, tmp_path):
    # Any finite loss is below 1e9: the first evaluation (step eval_every) stops the run.
    result = train(tiny_config, tmp_path, progress=False, stop_below=1e9)
    every = tiny_config.train.eval_every
    assert result.steps == every < tiny_config.train.steps
    meta = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert meta["step"] == every and meta["stopped_below"] == 1e9
    assert meta["val_loss"] == result.val_loss
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == every
    # Unreachable: the run goes the whole way and says nothing about stopping.
    full = train(tiny_config, tmp_path / "full", progress=False, stop_below=-1.0)
    assert full.steps == tiny_config.train.steps
    assert "stopped_below" not in json.loads((tmp_path / "full/checkpoint/config.json").read_text())
