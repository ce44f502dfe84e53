"""Run configuration: one frozen dataclass per concern, validated in one place.

A run is described by `RunConfig` (model + sparsity + optimiser + data + training loop).
Configs come from a preset name (`tiny`, `demo`, ...) or a YAML file, plus `key=value`
overrides with dotted keys (`model.d_model=128`). An unknown key, a wrong type or an
inconsistent value raises `ConfigError` with a one-line message naming the problem.

Every numeric field declares the values it accepts next to its docstring, as
`Annotated[float, Range(gt=0)]`; `check_ranges` enforces them (and finiteness) for every config
dataclass, this module's and `circuits.config.PruneConfig`, so a new field cannot skip the check.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml

from sparsecircuits.errors import ConfigError, SparseCircuitsError

PRESETS_PACKAGE = "sparsecircuits.presets"
MAX_SEED = 2**63 - 1
"""Largest seed accepted anywhere: torch generators take 64-bit seeds, and a few places add a
small offset to a seed."""
MAX_THREADS = 1024
"""Largest torch thread count accepted (a typo with extra zeros would start that many threads)."""


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts (floats must also be finite).

    Written in the field's annotation (`lr: Annotated[float, Range(gt=0)] = 3e-3`), so the
    bound sits next to the field's docstring; `check_ranges` enforces it.
    """

    ge: float | None = None
    """Smallest allowed value (inclusive)."""
    gt: float | None = None
    """Exclusive lower bound."""
    le: float | None = None
    """Largest allowed value (inclusive)."""
    lt: float | None = None
    """Exclusive upper bound."""

    def __contains__(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        """`in [0, 1)`, `> 0`, `>= 1`, ... (empty when unbounded)."""
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt)
        high = ("]", self.le) if self.le is not None else (")", self.lt)
        if low[1] is not None and high[1] is not None:
            return f"in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
        if low[1] is not None:
            return f"{'>=' if low[0] == '[' else '>'} {_number(low[1])}"
        if high[1] is not None:
            return f"{'<=' if high[0] == ']' else '<'} {_number(high[1])}"
        return ""


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def shown(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut to `limit` characters: an error message stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


# The ranges most fields use.
POSITIVE = Range(gt=0)
NON_NEGATIVE = Range(ge=0)
AT_LEAST_ONE = Range(ge=1)
FRACTION = Range(ge=0, le=1)
KEPT_FRACTION = Range(gt=0, le=1)
ADAM_BETA = Range(ge=0, lt=1)
SEED = Range(ge=0, le=MAX_SEED)


@functools.cache
def _field_kinds(cls: type) -> tuple[tuple[str, Any, Range | None], ...]:
    """(name, base type, range) per field of a config dataclass, annotations resolved once."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint, bounds = hints[f.name], None
        if typing.get_origin(hint) is Annotated:
            hint, *extras = typing.get_args(hint)
            bounds = next((e for e in extras if isinstance(e, Range)), None)
        out.append((f.name, hint, bounds))
    return tuple(out)


def numeric_fields(cls: type) -> dict[str, tuple[type, Range | None]]:
    """Every int/float field of a config dataclass: its type and declared Range (None if
    missing, which the tests forbid)."""
    return {n: (kind, r) for n, kind, r in _field_kinds(cls) if kind in (int, float)}


def check_ranges(obj: Any, prefix: str, error: type[SparseCircuitsError]) -> None:
    """Raise `error` naming the first field of `obj` whose value has the wrong type, is not
    finite, or lies outside its declared Range; `prefix` + field name is how the user spells it."""
    for name, kind, bounds in _field_kinds(type(obj)):
        value, key = getattr(obj, name), f"{prefix}{name}"
        if kind is bool:
            if not isinstance(value, bool):
                raise error(f"{key} must be true or false, got {shown(value)}")
        elif kind is str:
            if not isinstance(value, str):
                raise error(f"{key} must be a string, got {shown(value)}")
        elif kind in (int, float):
            allowed = bounds or Range()
            bound = allowed.describe()
            if kind is int:
                ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer "
            else:  # a closed interval says "finite" by itself
                ok = _is_finite_number(value)
                what = "" if bound.startswith("in ") else "a finite number "
            if not ok or value not in allowed:
                raise error(f"{key} must be {what}{bound}".rstrip() + f", got {shown(value)}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT (docs/method.md §2)."""

    vocab_size: Annotated[int, Range(ge=260, le=65535)] = 2048
    """Tokenizer vocabulary size; the BPE is trained to exactly this size."""
    n_layer: Annotated[int, AT_LEAST_ONE] = 2
    """Number of transformer blocks."""
    d_model: Annotated[int, AT_LEAST_ONE] = 64
    """Residual stream width."""
    d_head: Annotated[int, AT_LEAST_ONE] = 16
    """Width of one attention head; n_heads = d_model / d_head."""
    mlp_ratio: Annotated[int, AT_LEAST_ONE] = 4
    """MLP width = mlp_ratio x d_model."""
    n_ctx: Annotated[int, AT_LEAST_ONE] = 256
    """Context length in tokens."""
    positional: str = "none"
    """'none' (paper default: causal attention alone carries position) or 'learned'."""
    attention_sink: bool = True
    """Learnable per-head logit for an extra 'attend to nothing' slot."""
    bigram_table: bool = True
    """Dense vocab x vocab table added to the final logits (never sparsified)."""
    abstopk_fraction: Annotated[float, KEPT_FRACTION] = 0.25
    """AbsTopK at every node location keeps this fraction of features; 1.0 turns it off."""
    norm_eps: Annotated[float, Range(gt=0, le=1)] = 1e-5
    """RMSNorm epsilon."""
    abstopk_sites: str = "all"
    """Where AbsTopK applies: 'all' node locations, or a comma-separated subset of
    `attn.act_in,attn.q,attn.k,attn.v,attn.resid_delta,mlp.act_in,mlp.post_act,
    mlp.resid_delta` (imported OpenAI models, docs/openai.md)."""
    abstopk_rounding: str = "round"
    """k per location: 'round' = max(1, round(fraction x width)); 'floor' = floor of it, as
    OpenAI's circuit-sparsity code computes it (docs/openai.md)."""
    mlp_activation: str = "gelu"
    """The MLP nonlinearity: 'gelu' (exact erf form) or 'relu'."""
    kernels: str = "auto"
    """How sparse matrices and AbsTopK run on CPU: 'dense' (torch, dense-masked), 'sparse'
    (C++ kernels whose work follows the nonzero weights) or 'auto' (sparse below a measured
    density crossover per matrix). Same numbers either way; CUDA always runs dense."""

    @property
    def n_heads(self) -> int:
        return self.d_model // self.d_head

    @property
    def d_mlp(self) -> int:
        return self.mlp_ratio * self.d_model


@dataclass(frozen=True)
class SparsityConfig:
    """Weight sparsity: an L0 constraint enforced after every optimiser step (§3)."""

    weight_fraction: Annotated[float, KEPT_FRACTION] = 1.0
    """Target fraction of nonzero entries kept in every sparse matrix; 1.0 = dense model."""
    anneal_fraction: Annotated[float, FRACTION] = 0.5
    """Share of training over which the kept fraction goes linearly from 1.0 to the target."""
    min_per_node: Annotated[int, NON_NEGATIVE] = 4
    """Never leave a neuron/channel with fewer than this many nonzero weights (j)."""
    regrow_every: Annotated[int, NON_NEGATIVE] = 0
    """0: a dense weight gradient every step (the paper). R > 0: matrices on the sparse
    kernels take gradients on their support only, and a dense one every R steps, when weights
    off the support may enter (faster; see docs/sparse-kernels.md)."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a warmup-decay ('sharkfin') schedule scaled by 1/sqrt(kept fraction)."""

    lr: Annotated[float, POSITIVE] = 3e-3
    """Peak learning rate of a dense model (before the 1/sqrt(fraction) factor)."""
    warmup_fraction: Annotated[float, FRACTION] = 0.01
    """Share of training spent warming up linearly from 0."""
    final_lr_fraction: Annotated[float, FRACTION] = 0.0
    """Learning rate at the last step, as a fraction of the peak (linear decay)."""
    beta1: Annotated[float, ADAM_BETA] = 0.9
    """AdamW beta1."""
    beta2: Annotated[float, ADAM_BETA] = 0.95
    """AdamW beta2."""
    weight_decay: Annotated[float, NON_NEGATIVE] = 0.1
    """AdamW decoupled weight decay."""
    eps: Annotated[float, POSITIVE] = 0.1
    """AdamW epsilon (large on purpose, as in the paper)."""
    grad_clip_rms: Annotated[float, POSITIVE] = 1.0
    """Clip the root-mean-square of the whole gradient to this value."""


@dataclass(frozen=True)
class DataConfig:
    """Where the Python corpus comes from and how it is split."""

    sources: tuple[str, ...] = ()
    """Directories, globs or .py files; `stdlib` (the running interpreter's standard library);
    `idioms:N[:SEED]` (N generated modules of simple Python idioms); `pypi:LIST` (the .py files
    of a pinned list of PyPI wheels: `pypi:python` or a list file); empty = `stdlib` only."""
    max_files: Annotated[int, NON_NEGATIVE] = 0
    """Use at most this many files (0 = all); the choice is deterministic."""
    val_fraction: Annotated[float, FRACTION] = 0.02
    """Share of files (by path hash) in the validation split."""
    test_fraction: Annotated[float, FRACTION] = 0.02
    """Share of files (by path hash) in the test split."""
    cache_dir: str = ""
    """Where tokenizer and token shards are cached; empty = ~/.cache/sparsecircuits/data."""
    task_tokens: bool = False
    """Edit the trained BPE so every built-in task is expressible in it: each candidate one
    token, none swallowed by the code after it (same vocab size; see data/task_tokens.py)."""


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    steps: Annotated[int, AT_LEAST_ONE] = 100
    """Number of optimiser steps."""
    batch_size: Annotated[int, AT_LEAST_ONE] = 8
    """Global batch size in sequences of n_ctx + 1 tokens."""
    seed: Annotated[int, SEED] = 0
    """Seed for weights and for the data order."""
    eval_every: Annotated[int, AT_LEAST_ONE] = 50
    """Evaluate val loss every this many steps (and at the end)."""
    eval_batches: Annotated[int, AT_LEAST_ONE] = 4
    """Number of val batches per evaluation."""
    checkpoint_every: Annotated[int, AT_LEAST_ONE] = 100
    """Write a resumable checkpoint every this many steps (and at the end)."""
    device: str = "cpu"
    """'cpu' or 'cuda'."""
    threads: Annotated[int, Range(ge=0, le=MAX_THREADS)] = 0
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
    """The value as its field's type where the spelling differs (a number written as a string);
    anything else is left for `check_ranges`, which names the field and what it accepts."""
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads '3e-3' as a string; an int too large for a float stays an int
            return float(value)
        except (ValueError, OverflowError):
            return value
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"config key '{dotted}' must be a list of strings, got {shown(value)}")
    return value


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field's type and Range, then cross-field consistency; raise ConfigError
    naming the first problem."""
    for section in dataclasses.fields(cfg):
        check_ranges(getattr(cfg, section.name), f"{section.name}.", ConfigError)
    m, d, t = cfg.model, cfg.data, cfg.train
    if m.d_model % m.d_head:
        raise ConfigError(f"model.d_model ({m.d_model}) must be divisible by model.d_head ({m.d_head})")
    if m.positional not in ("none", "learned"):
        raise ConfigError(f"model.positional must be 'none' or 'learned', got {m.positional!r}")
    if m.kernels not in ("auto", "dense", "sparse"):
        raise ConfigError(f"model.kernels must be 'auto', 'dense' or 'sparse', got {m.kernels!r}")
    check_abstopk_sites(m.abstopk_sites, ConfigError)
    if m.abstopk_rounding not in ("round", "floor"):
        raise ConfigError(f"model.abstopk_rounding must be 'round' or 'floor', got {shown(m.abstopk_rounding)}")
    if m.mlp_activation not in ("gelu", "relu"):
        raise ConfigError(f"model.mlp_activation must be 'gelu' or 'relu', got {shown(m.mlp_activation)}")
    if d.val_fraction + d.test_fraction >= 1.0:
        raise ConfigError("data.val_fraction + data.test_fraction must leave files for training")
    check_device_name(t.device, "train.device", ConfigError)
    return cfg


ABSTOPK_SITE_NAMES = ("attn.act_in", "attn.q", "attn.k", "attn.v", "attn.resid_delta",
                      "mlp.act_in", "mlp.post_act", "mlp.resid_delta")
"""The node sublocations `model.abstopk_sites` may list (model.locations has the same)."""


def abstopk_site_set(sites: str) -> frozenset[str]:
    """'all' or 'attn.q,mlp.post_act' -> the set of `<attn|mlp>.<sublocation>` it names."""
    if sites == "all":
        return frozenset(ABSTOPK_SITE_NAMES)
    return frozenset(s for s in sites.split(",") if s)


def check_abstopk_sites(sites: str, error: type[SparseCircuitsError]) -> None:
    """`error` unless `sites` is 'all' or a comma-separated list of ABSTOPK_SITE_NAMES."""
    if sites == "all":
        return
    unknown = [s for s in sites.split(",") if s not in ABSTOPK_SITE_NAMES]
    if unknown:
        raise error(f"model.abstopk_sites: unknown site {shown(unknown[0])} (use 'all' or a "
                    f"comma-separated subset of {','.join(ABSTOPK_SITE_NAMES)})")


def check_device_name(device: str, what: str, error: type[SparseCircuitsError]) -> None:
    """`error` unless `device` is 'cpu', 'cuda' or 'cuda:N' (whether it exists is checked
    where it is used)."""
    index = device.removeprefix("cuda:")
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and index.isdecimal()
                                              and index.isascii()):
        raise error(f"{what} must be 'cpu', 'cuda' or 'cuda:N', got {shown(device)}")


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


def parse_overrides(texts: list[str] | None) -> dict[str, Any]:
    """Repeated `--set section.key=value` options -> {dotted key: value}; a later key wins."""
    return dict(parse_override(text) for text in texts or [])


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
