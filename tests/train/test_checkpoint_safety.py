"""Checkpoints under concurrency and kills: readers never rename, writers clean up after kills.

Real processes throughout: a writer process calling `write_checkpoint` in a loop (every tensor
of checkpoint N holds the value N, so a reader can tell a whole checkpoint from a mix of two),
readers in the test process, SIGKILL at arbitrary moments, and the real `train` CLI.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.errors import CheckpointError
from sparsecircuits.train.trainer import train

WRITER = """
import sys
from pathlib import Path
import torch
from sparsecircuits.checkpoint import write_checkpoint
from sparsecircuits.config import load_config
from sparsecircuits.model.gpt import GPT

cfg = load_config(sys.argv[1])
target, tokenizer_json = Path(sys.argv[2]), Path(sys.argv[3]).read_text()
first, count = int(sys.argv[4]), int(sys.argv[5])
stop = Path(sys.argv[6]) if len(sys.argv) > 6 else None
shapes = GPT(cfg.model).state_dict()
print("ready", flush=True)
step = first
while (count < 0 or step < first + count) and not (stop and stop.exists()):
    weights = {k: torch.full_like(v, float(step)) for k, v in shapes.items()}
    write_checkpoint(target, cfg, weights, tokenizer_json, {"step": step})
    step += 1
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecircuits", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _start_writer(config_file: Path, target: Path, tokenizer: Path, first: int, count: int,
                  stop: Path | None = None) -> subprocess.Popen:  # fmt: skip
    """A process writing checkpoints first, first + 1, ... (`count` of them, or until killed or
    until `stop` exists)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(config_file), str(target),
                             str(tokenizer), str(first), str(count),
                             *([str(stop)] if stop else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _write(config, target: Path, tokenizer: Path, step: int) -> None:
    from sparsecircuits.model.gpt import GPT

    weights = {k: torch.full_like(v, float(step)) for k, v in GPT(config.model).state_dict().items()}
    ckpt.write_checkpoint(target, config, weights, tokenizer.read_text(), {"step": step})


def _whole(loaded: ckpt.Loaded) -> int:
    """The step of a loaded writer checkpoint, asserting all its tensors came from that step."""
    step = loaded.meta["step"]
    for name, t in loaded.model.state_dict().items():
        assert bool((t == step).all()), f"{name} is not from checkpoint {step}: a mix of two"
    return step


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.slow
def test_readers_during_real_writes_see_whole_checkpoints_and_never_disturb_the_writer(
    tiny_run, tiny_config_file, tmp_path
):
    run = tmp_path / "run"
    tokenizer = tiny_run / "checkpoint" / "tokenizer.json"
    stop = tmp_path / "stop"
    writer = _start_writer(tiny_config_file, run / "checkpoint", tokenizer, first=0, count=-1,
                           stop=stop)  # fmt: skip
    seen: set[int] = set()
    loads = 0
    # Read until the reads have overlapped many writes, however fast this machine writes.
    while writer.poll() is None and (len(seen) < 8 or loads < 30) and loads < 5000:
        if not ckpt.run_has_checkpoint(run):
            time.sleep(0.005)
            continue
        seen.add(_whole(ckpt.load_checkpoint(run)))
        loads += 1
        assert len(ckpt.content_hash(run)) == 64
        assert ckpt.resolve(run).name in ("checkpoint", ".checkpoint.old")
    stop.touch()
    assert writer.wait(timeout=120) == 0, writer.stderr.read()[-2000:]
    assert len(seen) >= 8, f"the reads overlapped too few writes to test anything: {seen}"
    assert _listing(run) == ["checkpoint"]  # no temp dir, no .checkpoint.old left
    assert _whole(ckpt.load_checkpoint(run)) >= max(seen)


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_a_whole_checkpoint_and_the_next_write_cleans_up(
    tiny_run, tiny_config, tiny_config_file, tmp_path
):
    run = tmp_path / "run"
    tokenizer = tiny_run / "checkpoint" / "tokenizer.json"
    _write(tiny_config, run / "checkpoint", tokenizer, step=0)
    rng = random.Random(0)
    last = 0
    for kill in range(1, 5):
        writer = _start_writer(tiny_config_file, run / "checkpoint", tokenizer,
                               first=kill * 100_000, count=-1)  # fmt: skip
        time.sleep(rng.uniform(0.05, 0.4))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        before = _listing(run)
        step = _whole(ckpt.load_checkpoint(run))
        assert step >= last, "an older checkpoint came back after a kill"
        last = step
        assert _listing(run) == before, "a reader renamed or deleted something"
    _write(tiny_config, run / "checkpoint", tokenizer, step=last + 1)
    assert _listing(run) == ["checkpoint"]  # killed writers' temp dirs are gone
    assert _whole(ckpt.load_checkpoint(run)) == last + 1


def test_between_the_two_renames_readers_use_the_old_checkpoint_and_the_writer_restores_it(
    tiny_run, tiny_config, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    # What a kill between `checkpoint -> .checkpoint.old` and `temp -> checkpoint` leaves.
    os.rename(run / "checkpoint", run / ".checkpoint.old")
    half = run / ".checkpoint.tmp-abc123"
    half.mkdir()
    (half / "config.json").write_text("{")
    before = _listing(run)

    loaded = ckpt.load_checkpoint(run)
    assert loaded.path == run / ".checkpoint.old"
    assert loaded.content_hash == ckpt.content_hash(run) == ckpt.content_hash(tiny_run)
    result = cli("eval", str(run), "--batches", "1")
    assert result.returncode == 0, result.stderr
    assert _listing(run) == before  # readers only read

    train(tiny_config, run, resume=True, progress=False)  # the writer, on its next start
    assert ".checkpoint.old" not in _listing(run) and not half.exists()
    assert ckpt.content_hash(run / "checkpoint") == ckpt.content_hash(tiny_run)


@pytest.mark.slow
def test_training_killed_mid_checkpoint_resumes_and_leaves_no_temp_dirs(tiny_config, tmp_path):
    cfg = tiny_config.replace(**{"train.steps": 40, "train.checkpoint_every": 1,
                                 "train.eval_every": 20, "train.threads": 1})  # fmt: skip
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sparsecircuits", "train", "-c", str(cfg_file),
                             "--out", str(run), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    # Kill while a checkpoint is being built (its temp dir exists), after the first one.
    while proc.poll() is None and time.time() < deadline:
        if (run / "checkpoint").exists() and list(run.glob(".checkpoint.tmp-*")):
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.run_has_checkpoint(run), "the run was killed before its first checkpoint"
    assert ckpt.load_checkpoint(run).meta["step"] < 40, "the run finished before the kill"

    result = cli("train", "-c", str(cfg_file), "--out", str(run), "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert _listing(run) == ["checkpoint", "metrics.jsonl"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))


# --- F9: a damaged resumable checkpoint is a one-line error, and is left as it was ----------


def _damage_trainer_json(ck: Path, text: str) -> None:
    (ck / "trainer.json").write_text(text)


def _damage_tensors(ck: Path, change) -> None:
    tensors = load_file(str(ck / "trainer.safetensors"))
    change(tensors)
    save_file(tensors, str(ck / "trainer.safetensors"))


def _first(tensors: dict, prefix: str) -> str:
    return sorted(k for k in tensors if k.startswith(prefix))[0]


DAMAGE = {
    "no_step": (lambda ck: _damage_trainer_json(ck, '{"world_size": 1}'), "'step' must be"),
    "a_list": (lambda ck: _damage_trainer_json(ck, "[1]"), "not a JSON object"),
    "step_text": (lambda ck: _damage_trainer_json(ck, '{"step": "abc"}'), "'step' must be"),
    "step_negative": (lambda ck: _damage_trainer_json(ck, '{"step": -3}'), "'step' must be"),
    "bad_world": (lambda ck: _damage_trainer_json(ck, '{"step": 20, "world_size": 0}'),
                  "'world_size' must be"),
    "not_json": (lambda ck: _damage_trainer_json(ck, '{"step": 2'), "trainer.json is corrupt"),
    "rng_size": (lambda ck: _damage_tensors(
        ck, lambda t: t.update({"rng.torch": t["rng.torch"][:100].clone()})), "RNG state"),
    "rng_missing": (lambda ck: _damage_tensors(ck, lambda t: t.pop("rng.torch")), "RNG state"),
    "exp_avg_shape": (lambda ck: _damage_tensors(
        ck, lambda t: t.update({_first(t, "exp_avg."): torch.zeros(3)})), "has shape (3,)"),
    "exp_avg_nan": (lambda ck: _damage_tensors(
        ck, lambda t: t[_first(t, "exp_avg.")].fill_(float("nan"))), "NaN or infinite"),
    "exp_avg_sq_negative": (lambda ck: _damage_tensors(
        ck, lambda t: t[_first(t, "exp_avg_sq.")].fill_(-1.0)), "negative"),
    "step_missing": (lambda ck: _damage_tensors(
        ck, lambda t: t.pop(_first(t, "step."))), "lacks"),
    "exp_avg_int": (lambda ck: _damage_tensors(
        ck, lambda t: t.update({k: v.to(torch.int32) for k, v in t.items()
                                if k.startswith("exp_avg.")})), "dtype int32"),
}  # fmt: skip


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_from_damaged_trainer_state_is_a_one_line_error(tiny_run, tiny_config, tmp_path,
                                                                damage):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    change, message = DAMAGE[damage]
    change(run / "checkpoint")
    before = {p.name: p.read_bytes() for p in [*(run / "checkpoint").iterdir(),
                                                run / "metrics.jsonl"]}  # fmt: skip
    with pytest.raises(CheckpointError) as err:
        train(tiny_config, run, resume=True, progress=False)
    assert message in str(err.value) and "\n" not in str(err.value)
    after = {p.name: p.read_bytes() for p in [*(run / "checkpoint").iterdir(),
                                               run / "metrics.jsonl"]}  # fmt: skip
    assert after == before  # the damaged run is left for the user to inspect


def test_resume_damage_through_the_cli(tiny_run, tiny_config_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _damage_trainer_json(run / "checkpoint", '{"step": "abc"}')
    result = cli("train", "-c", str(tiny_config_file), "--out", str(run), "--resume",
                 "--no-progress")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "'step' must be" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _stopped_at_3(tiny_config, run: Path):
    """A run of 6 steps stopped by a checkpoint at step 3: a real mid-run checkpoint."""
    cfg = tiny_config.replace(**{"train.steps": 6, "train.checkpoint_every": 3,
                                 "train.eval_every": 3})  # fmt: skip
    assert train(cfg, run, progress=False, stop_below=1e9).steps == 3
    return cfg


def test_a_metrics_line_cut_by_a_kill_is_dropped_and_the_log_repaired_on_resume(tiny_config,
                                                                                tmp_path):  # fmt: skip
    run = tmp_path / "run"
    cfg = _stopped_at_3(tiny_config, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 5.12')  # the append a kill (or a full disk) cut short
    result = train(cfg, run, resume=True, progress=False)
    assert result.steps == 6
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]


def test_a_damaged_metrics_line_before_the_last_is_a_one_line_error(tiny_config, tmp_path):
    run = tmp_path / "run"
    cfg = _stopped_at_3(tiny_config, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match="metrics.jsonl line 2 is not a metrics record"):
        train(cfg, run, resume=True, progress=False)
    assert (run / "metrics.jsonl").read_text().splitlines() == lines


# --- F8: weights that are not floats, or not finite, are refused on load -------------------


def _cast(tensors: dict, dtype) -> None:
    tensors.update({k: v.to(dtype) for k, v in tensors.items()})


def _poison(tensors: dict, value: float) -> None:
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = value


WEIGHTS = {
    "int32": (lambda t: _cast(t, torch.int32), "dtype int32, not floating point"),
    "bool": (lambda t: _cast(t, torch.bool), "dtype bool, not floating point"),
    "nan": (lambda t: _poison(t, float("nan")), "NaN or infinite"),
    "inf": (lambda t: _poison(t, float("inf")), "NaN or infinite"),
}


@pytest.mark.parametrize("damage", sorted(WEIGHTS))
def test_weights_that_are_not_finite_floats_are_refused(tiny_run, tmp_path, damage):
    ck = tmp_path / "ck"
    shutil.copytree(tiny_run / "checkpoint", ck)
    change, message = WEIGHTS[damage]
    tensors = load_file(str(ck / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match=message):
        ckpt.load_checkpoint(ck)


def test_eval_and_prune_refuse_int_weights_with_one_line(tiny_run, tmp_path):
    import typer
    from typer.testing import CliRunner

    from sparsecircuits.circuits import cli as circuits_cli

    app = typer.Typer()
    circuits_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keeps `prune` a named subcommand
    ck = tmp_path / "ck"
    shutil.copytree(tiny_run / "checkpoint", ck)
    tensors = load_file(str(ck / "model.safetensors"))
    _cast(tensors, torch.int32)
    save_file(tensors, str(ck / "model.safetensors"))
    result = cli("eval", str(ck))
    assert result.returncode == 2 and "not floating point" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    out = tmp_path / "circuits"
    r = CliRunner().invoke(app, ["prune", str(ck), "--task", "single_double_quote", "--out",
                                 str(out), "--no-progress"])  # fmt: skip
    assert isinstance(r.exception, CheckpointError), r.output
    assert not out.exists()


# --- permissions: every artifact 0644, every artifact directory 0755 ------------------------


def test_artifacts_are_world_readable_whatever_the_umask(tiny_run, tiny_config, tmp_path):
    import numpy as np

    from sparsecircuits.data.shards import write_shard
    from sparsecircuits.data.tokenizer import load_tokenizer, save_tokenizer

    previous = os.umask(0o077)
    try:
        _write(tiny_config, tmp_path / "run" / "checkpoint", tiny_run / "checkpoint" /
               "tokenizer.json", step=1)  # fmt: skip
        write_shard(np.arange(10), tmp_path / "train.bin")
        save_tokenizer(load_tokenizer(tiny_run / "checkpoint" / "tokenizer.json"),
                       tmp_path / "tokenizer.json")  # fmt: skip
    finally:
        os.umask(previous)
    ck = tmp_path / "run" / "checkpoint"
    assert ck.stat().st_mode & 0o777 == 0o755
    for f in [*ck.iterdir(), tmp_path / "train.bin", tmp_path / "tokenizer.json"]:
        assert f.stat().st_mode & 0o777 == 0o644, f
