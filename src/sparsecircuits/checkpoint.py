"""Checkpoint directories: written atomically, read without pickle, checked on load.

Layout (DESIGN.md):
    config.json          format marker + version, the RunConfig, step, data description
    model.safetensors    model weights
    tokenizer.json       the BPE the model was trained with
    trainer.safetensors  AdamW moments and RNG state (only needed to resume)
    trainer.json         optimiser step counters and data position (only needed to resume)

A checkpoint is built in a temporary sibling directory and renamed into place; the previous
checkpoint is moved aside first and removed only after the new one is in place, so a crash
at any moment leaves at least one complete checkpoint (`_recover` picks it up).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from sparsecircuits.config import RunConfig, config_from_dict
from sparsecircuits.errors import CheckpointError, ConfigError
from sparsecircuits.fileformat import read_versioned_json
from sparsecircuits.model.gpt import GPT

FORMAT = "sparsecircuits.checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoint"  # inside a run directory
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


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


def resolve(path: str | Path) -> Path:
    """Accept a checkpoint directory or a run directory that contains `checkpoint/`."""
    p = Path(path)
    if (p / CHECKPOINT_DIR / "config.json").exists() or _old_path(p / CHECKPOINT_DIR).exists():
        p = p / CHECKPOINT_DIR
    _recover(p)
    if not p.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    missing = [f for f in REQUIRED_FILES if not (p / f).is_file()]
    if missing:
        raise CheckpointError(f"{path} is not a sparsecircuits checkpoint (missing {', '.join(missing)})")
    return p


def _old_path(p: Path) -> Path:
    return p.with_name(f".{p.name}.old")


def _recover(p: Path) -> None:
    """If a crash hit between moving the old checkpoint aside and renaming the new one in."""
    old = _old_path(p)
    if old.exists() and not p.exists():
        os.replace(old, p)


def read_meta(path: Path) -> dict[str, Any]:
    return read_versioned_json(path / "config.json", FORMAT, FORMAT_VERSION, "checkpoint",
                               CheckpointError, where=path)  # fmt: skip


def read_config(path: Path) -> RunConfig:
    meta = read_meta(path)
    try:
        return config_from_dict(meta["run_config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{path}/config.json holds an unusable run config: {exc}") from None


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; CheckpointError (one line) if it is unreadable."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt: {str(exc).splitlines()[0]}") from None


def load_tokenizer_file(file: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise CheckpointError(f"{file} is not a valid tokenizer: {str(exc).splitlines()[0]}") from None


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Strict load: every tensor must be present with the right shape, and nothing extra."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where} does not match its config (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(tensor.shape)}, "
                f"config says {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Loaded:
    """Load model, tokenizer and config for inference; CheckpointError on any problem."""
    p = resolve(path)
    meta = read_meta(p)
    cfg = read_config(p)
    tokenizer = load_tokenizer_file(p / "tokenizer.json")
    if tokenizer.get_vocab_size() != cfg.model.vocab_size:
        raise CheckpointError(
            f"{p}: tokenizer has {tokenizer.get_vocab_size()} tokens but the model expects "
            f"{cfg.model.vocab_size}"
        )
    model = GPT(cfg.model)
    load_state_into(model, load_tensors(p / "model.safetensors"), p / "model.safetensors")
    model.to(device).eval()
    return Loaded(model=model, tokenizer=tokenizer, config=cfg, path=p, meta=meta)


def content_hash(path: str | Path) -> str:
    """sha256 of the weights file: identifies the exact model a circuit was found in."""
    p = resolve(path)
    digest = hashlib.sha256()
    with open(p / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checkpoint(
    target: Path,
    cfg: RunConfig,
    model_state: dict[str, torch.Tensor],
    tokenizer_json: str,
    meta: dict[str, Any],
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_json: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
    try:
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "run_config": cfg.to_dict()}
        (tmp / "config.json").write_text(json.dumps({**header, **meta}, indent=2) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                  str(tmp / "model.safetensors"))
        (tmp / "tokenizer.json").write_text(tokenizer_json)
        if trainer_tensors is not None:
            save_file(trainer_tensors, str(tmp / "trainer.safetensors"))
        if trainer_json is not None:
            (tmp / "trainer.json").write_text(json.dumps(trainer_json, indent=2) + "\n")
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            f.chmod(0o644)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = _old_path(target)
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_trainer_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer moments / RNG state and counters of a resumable checkpoint."""
    tensors_file, json_file = path / "trainer.safetensors", path / "trainer.json"
    if not tensors_file.is_file() or not json_file.is_file():
        raise CheckpointError(f"{path} holds no trainer state, so it cannot be resumed")
    try:
        state = json.loads(json_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_file} is corrupt: {exc}") from None
    return load_tensors(tensors_file), state
