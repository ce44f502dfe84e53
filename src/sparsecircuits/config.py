"""Run configuration: one frozen dataclass per concern, validated in one place.

A run is described by `RunConfig` (model + sparsity + optimiser + data + training loop).
Configs come from a preset name (`tiny`, `demo`, ...) or a YAML file, plus `key=value`
overrides with dotted keys (`model.d_model=128`). An unknown key, a wrong type or an
inconsistent value raises `ConfigError` with a one-line message naming the problem.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sparsecircuits.errors import ConfigError

PRESETS_PACKAGE = "sparsecircuits.presets"


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (PAPER_NOTES §2)."""

    vocab_size: int = 2048
    """Tokenizer vocabulary size; the BPE is trained to exactly this size."""
    n_layer: int = 2
    """Number of transformer blocks."""
    d_model: int = 64
    """Residual stream width."""
    d_head: int = 16
    """Width of one attention head; n_heads = d_model / d_head."""
    mlp_ratio: int = 4
    """MLP width = mlp_ratio x d_model."""
    n_ctx: int = 256
    """Context length in tokens."""
    positional: str = "none"
    """'none' (paper default: causal attention alone carries position) or 'learned'."""
    attention_sink: bool = True
    """Learnable per-head logit for an extra 'attend to nothing' slot."""
    bigram_table: bool = True
    """Dense vocab x vocab table added to the final logits (never sparsified)."""
    abstopk_fraction: float = 0.25
    """AbsTopK at every node location keeps this fraction of features; 1.0 turns it off."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""

    @property
    def n_heads(self) -> int:
        return self.d_model // self.d_head

    @property
    def d_mlp(self) -> int:
        return self.mlp_ratio * self.d_model


@dataclass(frozen=True)
class SparsityConfig:
    """Weight sparsity: an L0 constraint enforced after every optimiser step (§3)."""

    weight_fraction: float = 1.0
    """Target fraction of nonzero entries kept in every sparse matrix; 1.0 = dense model."""
    anneal_fraction: float = 0.5
    """Share of training over which the kept fraction goes linearly from 1.0 to the target."""
    min_per_node: int = 4
    """Never leave a neuron/channel with fewer than this many nonzero weights (j)."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warmup-decay ('sharkfin') schedule scaled by 1/sqrt(kept fraction)."""

    lr: float = 3e-3
    """Peak learning rate of a dense model (before the 1/sqrt(fraction) factor)."""
    warmup_fraction: float = 0.01
    """Share of training spent warming up linearly from 0."""
    final_lr_fraction: float = 0.0
    """Learning rate at the last step, as a fraction of the peak (linear decay)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay."""
    eps: float = 0.1
    """AdamW epsilon (large on purpose, as in the paper)."""
    grad_clip_rms: float = 1.0
    """Clip the root-mean-square of the whole gradient to this value."""


@dataclass(frozen=True)
class DataConfig:
    """Where the Python corpus comes from and how it is split."""

    sources: tuple[str, ...] = ()
    """Directories, globs or .py files; `stdlib` (the running interpreter's standard library);
    `idioms:N[:SEED]` (N generated modules of simple Python idioms); empty = `stdlib` only."""
    max_files: int = 0
    """Use at most this many files (0 = all); the choice is deterministic."""
    val_fraction: float = 0.02
    """Share of files (by path hash) in the validation split."""
    test_fraction: float = 0.02
    """Share of files (by path hash) in the test split."""
    cache_dir: str = ""
    """Where tokenizer and token shards are cached; empty = ~/.cache/sparsecircuits/data."""


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    steps: int = 100
    """Number of optimiser steps."""
    batch_size: int = 8
    """Global batch size in sequences of n_ctx + 1 tokens."""
    seed: int = 0
    """Seed for weights and for the data order."""
    eval_every: int = 50
    """Evaluate val loss every this many steps (and at the end)."""
    eval_batches: int = 4
    """Number of val batches per evaluation."""
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many steps (and at the end)."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    threads: int = 0
    """torch CPU threads (0 = torch default)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def replace(self, **overrides: Any) -> RunConfig:
        """A copy with dotted-key overrides applied and validated (`{'model.d_model': 128}`)."""
        return config_from_dict(_apply_overrides(self.to_dict(), overrides))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    """Instantiate a config dataclass from a plain dict, rejecting unknown keys and bad types."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{where or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            dotted = f"{where}.{key}" if where else key
            raise ConfigError(f"unknown config key '{dotted}' (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in values.items():
        dotted = f"{where}.{name}" if where else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, dotted)
        else:
            kwargs[name] = _coerce(value, hint, dotted)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, dotted: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{dotted}' must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{dotted}' must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '3e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{dotted}' must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{dotted}' must be a string, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"config key '{dotted}' must be a list of strings, got {value!r}")
    raise ConfigError(f"config key '{dotted}' has an unsupported type")  # pragma: no cover


def validate(cfg: RunConfig) -> RunConfig:
    """Check cross-field consistency; raise ConfigError naming the first problem."""
    m, s, o, d, t = cfg.model, cfg.sparsity, cfg.optim, cfg.data, cfg.train
    for name, value in [("model.n_layer", m.n_layer), ("model.d_model", m.d_model),
                        ("model.d_head", m.d_head), ("model.mlp_ratio", m.mlp_ratio),
                        ("model.n_ctx", m.n_ctx), ("model.vocab_size", m.vocab_size),
                        ("train.steps", t.steps), ("train.batch_size", t.batch_size),
                        ("train.eval_every", t.eval_every), ("train.eval_batches", t.eval_batches),
                        ("train.checkpoint_every", t.checkpoint_every)]:
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
    if m.d_model % m.d_head:
        raise ConfigError(f"model.d_model ({m.d_model}) must be divisible by model.d_head ({m.d_head})")
    if m.vocab_size > 65535:
        raise ConfigError(f"model.vocab_size ({m.vocab_size}) must fit uint16 token shards (<= 65535)")
    if m.vocab_size < 260:
        raise ConfigError(f"model.vocab_size ({m.vocab_size}) must be at least 260 (256 bytes + specials)")
    if m.positional not in ("none", "learned"):
        raise ConfigError(f"model.positional must be 'none' or 'learned', got {m.positional!r}")
    for name, value in [("model.abstopk_fraction", m.abstopk_fraction),
                        ("sparsity.weight_fraction", s.weight_fraction)]:
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{name} must be in (0, 1], got {value}")
    for name, value in [("sparsity.anneal_fraction", s.anneal_fraction),
                        ("optim.warmup_fraction", o.warmup_fraction),
                        ("optim.final_lr_fraction", o.final_lr_fraction),
                        ("data.val_fraction", d.val_fraction),
                        ("data.test_fraction", d.test_fraction)]:
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value}")
    if d.val_fraction + d.test_fraction >= 1.0:
        raise ConfigError("data.val_fraction + data.test_fraction must leave files for training")
    if s.min_per_node < 0:
        raise ConfigError(f"sparsity.min_per_node must be >= 0, got {s.min_per_node}")
    if o.lr <= 0 or o.eps <= 0 or o.grad_clip_rms <= 0:
        raise ConfigError("optim.lr, optim.eps and optim.grad_clip_rms must be positive")
    if t.device not in ("cpu", "cuda") and not t.device.startswith("cuda:"):
        raise ConfigError(f"train.device must be 'cpu' or 'cuda', got {t.device!r}")
    return cfg


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    return validate(_build(RunConfig, values, ""))


def list_presets() -> list[str]:
    files = resources.files(PRESETS_PACKAGE).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{origin} must hold a mapping of config sections")
    return values


def _apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    values = _to_plain(values)
    for dotted, value in overrides.items():
        node = values
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{dotted}' does not name a config key")
        node[parts[-1]] = value
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """`model.d_model=128` -> ('model.d_model', 128); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads '1e-8' as a string; users mean the number.
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def load_config(spec: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a preset by name or a YAML file by path, then apply dotted-key overrides."""
    path = Path(spec)
    if spec in list_presets():
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{spec}.yaml").read_text()
        values = _read_yaml(text, f"preset '{spec}'")
    elif path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {spec} does not exist")
        values = _read_yaml(path.read_text(), f"config file {spec}")
    else:
        raise ConfigError(f"'{spec}' is neither a preset ({', '.join(list_presets())}) nor a config file")
    return config_from_dict(_apply_overrides(values, overrides or {}))
