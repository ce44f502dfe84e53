"""Checkpoint directories: written atomically, read without pickle, checked on load.

Layout (docs/architecture.md):
    config.json          format marker + version, the RunConfig, step, data description
    model.safetensors    model weights (an export may store some sparse: sparse_storage)
    tokenizer.json       the BPE the model was trained with
    trainer.safetensors  AdamW moments and RNG state (only needed to resume)
    trainer.json         optimiser step counters and data position (only needed to resume)

How one checkpoint replaces another while others read it. The writer builds the new one in
`.checkpoint.tmp-<host>-<pid>-<random>`, then swaps it in with two renames, `checkpoint` ->
`.checkpoint.old` and temp -> `checkpoint`, and deletes `.checkpoint.old`. At every instant
`checkpoint` or `.checkpoint.old` is complete, and only the writer renames or deletes:
- A reader (`resolve`, `load_checkpoint`) never changes anything on disk. It reads
  `checkpoint`, or `.checkpoint.old` while `checkpoint` is missing (the writer is between its
  renames, or was killed there). It reads all files of one load through one open handle on the
  directory, so a swap during the load cannot mix two checkpoints; if the swap deleted the
  directory first, it starts again on the new one.
- A killed writer's leftovers are the writer's own business: on its next write (or `recover`,
  which `train --resume` calls first) it renames `.checkpoint.old` back when `checkpoint` is
  missing and deletes temp directories whose process is gone (`fileformat.remove_stale_temp_dirs`).
  Readers ignore temp directories.
Why not a symlink `checkpoint -> .checkpoint.vN` (one atomic rename per swap): the path
`run/checkpoint` is recorded in circuit files and the viewer's model list, zoo models are
committed to git, and the viewer refuses links in its artifacts directory; a real directory
keeps all of those plain. Linux's renameat2(RENAME_EXCHANGE) would avoid the missing-name
moment but is neither portable nor supported by every file system.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from tokenizers import Tokenizer

from sparsecircuits import sparse_storage
from sparsecircuits.config import RunConfig, check_device_name, config_from_dict
from sparsecircuits.errors import CheckpointError, ConfigError
from sparsecircuits.fileformat import (
    atomic_write,
    atomic_write_text,
    read_versioned_json,
    remove_stale_temp_dirs,
    temp_dir,
    write_json,
)
from sparsecircuits.model.gpt import GPT

FORMAT = "sparsecircuits.checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"  # inside a run directory
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
_READ_ATTEMPTS = 50
"""How often a reader looks again while a writer is swapping checkpoints (20 ms apart)."""


@dataclass
class Loaded:
    """A checkpoint ready for inference."""

    model: GPT
    """The model, in eval mode, on the requested device."""
    tokenizer: Tokenizer
    """The tokenizer the model was trained with."""
    config: RunConfig
    """The full run configuration."""
    path: Path
    """The checkpoint directory."""
    meta: dict[str, Any]
    """The rest of config.json: step, data description, metrics at save time."""
    content_hash: str = ""
    """sha256 of the model.safetensors these weights were read from (see `content_hash()`)."""


# --- reading: never renames or deletes anything ---------------------------------------------


def _old_path(p: Path) -> Path:
    return p.with_name(f".{p.name}.old")


def _complete(p: Path) -> bool:
    return p.is_dir() and all((p / f).is_file() for f in REQUIRED_FILES)


def _checkpoint_dir(p: Path) -> Path:
    """`p/checkpoint` if `p` is a run directory (or one mid-swap), else `p` itself."""
    inside = p / CHECKPOINT_DIR
    return inside if inside.exists() or _old_path(inside).exists() else p


def _swap_in_flight(p: Path) -> bool:
    """Whether a writer may be replacing the checkpoint `p` (or `p/checkpoint`) right now:
    a `.old` or temp sibling exists (a killed writer's, possibly, until its next write)."""
    for base in (p, p / CHECKPOINT_DIR):
        if _old_path(base).exists():
            return True
        if base.parent.is_dir() and any(base.parent.glob(f".{glob.escape(base.name)}.tmp-*")):
            return True
    return False


def run_has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run directory `run_dir` holds a checkpoint (even one a kill left mid-swap)."""
    p = Path(run_dir) / CHECKPOINT_DIR
    return p.exists() or _old_path(p).exists()


def resolve(path: str | Path) -> Path:
    """The directory to read for `path`: a checkpoint directory, or a run with `checkpoint/`.

    Read-only. Normally `path` itself or `path/checkpoint`; their `.old` sibling while a writer
    is between its two renames (or was killed there). CheckpointError if there is none.
    """
    p = Path(path)
    for attempt in range(_READ_ATTEMPTS):
        base = _checkpoint_dir(p)
        for candidate in (base, _old_path(base)):
            if _complete(candidate):
                return candidate
        # Always a second look: a whole swap may have passed between our two checks above.
        if attempt > 0 and not _swap_in_flight(p):
            break
        time.sleep(0.02 if attempt > 0 else 0.001)
    base = _checkpoint_dir(p)
    if not base.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not base.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    missing = [f for f in REQUIRED_FILES if not (base / f).is_file()]
    raise CheckpointError(
        f"{path} is not a sparsecircuits checkpoint (missing {', '.join(missing)})"
    )


def _read_files(directory: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of `names`, all from the one directory `directory` names when we open it.

    Files are opened relative to an open handle on the directory, so a writer renaming
    another checkpoint into place meanwhile cannot hand us a mix of two. FileNotFoundError if
    the writer deleted the directory first. (Platforms without dir_fd read by path.)
    """
    if os.open not in os.supports_dir_fd or not hasattr(os, "O_DIRECTORY"):
        return {name: (directory / name).read_bytes() for name in names}
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = {}
        for name in names:
            fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as f:
                out[name] = f.read()
        return out
    finally:
        os.close(dir_fd)


def _snapshot(path: str | Path, names: tuple[str, ...]) -> tuple[Path, dict[str, bytes]]:
    """`resolve(path)` and the bytes of `names` in it, read again if a swap deleted it."""
    for _ in range(_READ_ATTEMPTS):
        p = resolve(path)
        try:
            return p, _read_files(p, names)
        except FileNotFoundError:
            time.sleep(0.02)  # swapped out under us: read the checkpoint that replaced it
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{p} cannot be read: {exc}") from None
    raise CheckpointError(f"{path} kept changing while it was read; try again")


def read_meta(path: str | Path, content: bytes | None = None) -> dict[str, Any]:
    """config.json of the checkpoint (or run) `path`, checked to be ours."""
    if content is None:
        path, files = _snapshot(path, ("config.json",))
        content = files["config.json"]
    return read_versioned_json(Path(path) / "config.json", FORMAT, FORMAT_VERSION, "checkpoint",
                               CheckpointError, where=Path(path), content=content)  # fmt: skip


def read_config(path: str | Path, meta: dict[str, Any] | None = None) -> RunConfig:
    meta = read_meta(path) if meta is None else meta
    try:
        return config_from_dict(meta["run_config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}/config.json holds an unusable run config: {exc}") from None


def load_tensors(file: Path, content: bytes | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (or of its bytes); CheckpointError (one line) if unreadable."""
    try:
        if content is None:
            content = file.read_bytes()
        return load_safetensors_bytes(content)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise CheckpointError(f"{file} is corrupt: {lines[0]}") from None


def load_tokenizer_file(file: Path, content: bytes | None = None) -> Tokenizer:
    try:
        text = (file.read_bytes() if content is None else content).decode("utf-8")
        return Tokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise CheckpointError(f"{file} is not a valid tokenizer: {lines[0]}") from None


def check_tensor(
    tensor: torch.Tensor, name: str, shape: tuple[int, ...] | torch.Size, where: Path
) -> None:
    """CheckpointError unless `tensor` is floating point, of `shape`, and finite everywhere.

    A weight file cast to int or bool, or holding NaN, would otherwise load (load_state_dict
    casts silently) and fail far away: a NaN loss, an empty circuit, a viewer error.
    """
    if tuple(tensor.shape) != tuple(shape):
        raise CheckpointError(
            f"{where}: tensor {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}"
        )
    if not tensor.is_floating_point():
        dtype = str(tensor.dtype).removeprefix("torch.")
        raise CheckpointError(f"{where}: tensor {name} has dtype {dtype}, not floating point")
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"{where}: tensor {name} holds NaN or infinite values")


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Strict load: every tensor present, float, finite and of the right shape; nothing extra.

    `state` is a weights file's tensors as stored: tensors stored sparse (indices + values,
    `sparsecircuits.sparse_storage`) are made dense here, their index checked first.
    """
    expected = model.state_dict()
    state = sparse_storage.decode(state, where, {k: tuple(v.shape) for k, v in expected.items()})
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where} does not match its config (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, tensor in state.items():
        check_tensor(tensor, name, expected[name].shape, where)
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Loaded:
    """Load model, tokenizer and config for inference; CheckpointError on any problem."""
    check_device_name(device, "--device", ConfigError)  # before reading anything
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device is {device!r} but no CUDA device is available")
    p, files = _snapshot(path, REQUIRED_FILES)
    meta = read_meta(p, files["config.json"])
    cfg = read_config(p, meta)
    tokenizer = load_tokenizer_file(p / "tokenizer.json", files["tokenizer.json"])
    if tokenizer.get_vocab_size() != cfg.model.vocab_size:
        raise CheckpointError(
            f"{p}: tokenizer has {tokenizer.get_vocab_size()} tokens but the model expects "
            f"{cfg.model.vocab_size}"
        )
    model = GPT(cfg.model)
    weights = p / "model.safetensors"
    load_state_into(model, load_tensors(weights, files["model.safetensors"]), weights)
    model.to(device).eval()
    digest = hashlib.sha256(files["model.safetensors"]).hexdigest()
    return Loaded(model=model, tokenizer=tokenizer, config=cfg, path=p, meta=meta,
                  content_hash=digest)  # fmt: skip


def content_hash(path: str | Path) -> str:
    """sha256 of the weights file: identifies the exact model a circuit was found in."""
    for _ in range(_READ_ATTEMPTS):
        p = resolve(path)
        digest = hashlib.sha256()
        try:
            with open(p / "model.safetensors", "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            time.sleep(0.02)  # swapped out under us
            continue
        return digest.hexdigest()
    raise CheckpointError(f"{path} kept changing while it was read; try again")


# --- writing: one writer per checkpoint directory -------------------------------------------


def recover(target: Path) -> None:
    """Writer only: finish what a killed writer left at `target` (see the module docstring).

    Renames `.checkpoint.old` back if the kill fell between the two renames, deletes it if the
    kill fell during its deletion, and deletes temp directories of writers that are gone.
    """
    old = _old_path(target)
    if not target.exists() and _complete(old):
        os.replace(old, target)
    elif target.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)
    if target.parent.is_dir():
        remove_stale_temp_dirs(target.parent, target.name)


def write_checkpoint(
    target: Path,
    cfg: RunConfig,
    model_state: dict[str, torch.Tensor],
    tokenizer_json: str,
    meta: dict[str, Any],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_json: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path (module docstring: how)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = temp_dir(target.parent, target.name)
    try:
        # Each file through the one atomic write: mode 0644 and on disk before the renames.
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_config": cfg.to_dict()}
        write_json(tmp / "config.json", {**header, **meta}, indent=2)
        weights = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
        atomic_write(tmp / "model.safetensors", lambda f: save_file(weights, str(f)))
        atomic_write_text(tmp / "tokenizer.json", tokenizer_json)
        if trainer_tensors is not None:
            atomic_write(tmp / "trainer.safetensors", lambda f: save_file(trainer_tensors, str(f)))
        if trainer_json is not None:
            write_json(tmp / "trainer.json", trainer_json, indent=2)
        old = _old_path(target)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@dataclass
class ResumeState:
    """What `train --resume` reads, all from one checkpoint (never half of two)."""

    path: Path
    """The checkpoint directory read."""
    weights: dict[str, torch.Tensor]
    """model.safetensors."""
    tensors: dict[str, torch.Tensor]
    """trainer.safetensors: AdamW moments and counters per parameter, and the RNG state."""
    step: int
    """Optimiser steps taken (trainer.json)."""
    counters: dict[str, Any]
    """All of trainer.json."""


def load_resume_state(path: str | Path) -> ResumeState:
    """Weights, optimizer/RNG state and counters of a resumable checkpoint.

    Checks the form of trainer.json (an object with an integer `step` >= 0); the trainer checks
    the tensors against its model (`train.trainer`).
    """
    names = ("model.safetensors", "trainer.safetensors", "trainer.json")
    p = resolve(path)
    if not all((p / name).is_file() for name in names[1:]):
        raise CheckpointError(f"{p} holds no trainer state, so it cannot be resumed")
    p, files = _snapshot(path, names)
    json_file = p / "trainer.json"
    try:
        counters = json.loads(files["trainer.json"].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        raise CheckpointError(f"{json_file} is corrupt: {lines[0]}") from None
    if not isinstance(counters, dict):
        raise CheckpointError(f"{json_file} is corrupt: not a JSON object")
    step = counters.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        shown = repr(step)[:40]
        raise CheckpointError(f"{json_file} is corrupt: 'step' must be an integer >= 0, got {shown}")
    world = counters.get("world_size", 1)
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        shown = repr(world)[:40]
        raise CheckpointError(
            f"{json_file} is corrupt: 'world_size' must be an integer >= 1, got {shown}"
        )
    return ResumeState(
        path=p,
        weights=load_tensors(p / "model.safetensors", files["model.safetensors"]),
        tensors=load_tensors(p / "trainer.safetensors", files["trainer.safetensors"]),
        step=step,
        counters=counters,
    )
