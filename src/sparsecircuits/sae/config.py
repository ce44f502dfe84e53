"""Options of an SAE training run: one frozen dataclass, validated in one place (docs/sae.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sparsecircuits.errors import SAEError


@dataclass(frozen=True)
class SAETrainConfig:
    """How to train one TopK SAE on one hook point of one model."""

    location: str = "1.resid_post"
    """Hook point whose activations are encoded (`L.resid_pre|mid|post`, `final_resid` or a
    node location such as `L.mlp.post_act`)."""
    k: int = 32
    """Active latents per token (TopK), or on average per token (BatchTopK)."""
    expansion: int = 8
    """d_sae = expansion x d_in."""
    batch_topk: bool = False
    """Train with BatchTopK (k x batch largest over the batch) and infer with the learned
    global threshold (Bussmann et al. 2024) instead of a per-token TopK."""
    tokens: int = 2_000_000
    """Activation vectors (token positions) to train on."""
    batch_size: int = 4096
    """Activation vectors per optimiser step."""
    lr: float = 0.0
    """Adam learning rate; 0 means Gao et al.'s 2e-4 / sqrt(d_sae / 2^14)."""
    warmup_steps: int = 100
    """Linear learning-rate warmup from 0."""
    aux_k: int = 0
    """Dead latents used by the AuxK loss; 0 means d_in / 2 (Gao et al. appendix B.1)."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss (Gao et al.)."""
    dead_tokens: int = 250_000
    """A latent that has not fired for this many training tokens counts as dead."""
    buffer_windows: int = 64
    """Pretraining windows (of n_ctx tokens) whose activations are shuffled together."""
    b_dec_init: str = "geometric_median"
    """Decoder bias start: 'geometric_median' or 'mean' of the first buffer, or 'zeros'."""
    threshold_lr: float = 0.01
    """BatchTopK only: EMA rate of the inference threshold (min positive kept activation)."""
    grad_clip: float = 1.0
    """Clip the gradient's global norm to this (0 = off)."""
    seed: int = 0
    """Seed of the initialisation, the windows drawn and the shuffles."""
    checkpoint_every: int = 200
    """Save the SAE and its trainer state every this many steps (and at the end)."""

    def replace(self, **changes: Any) -> SAETrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> SAETrainConfig:
        """The config saved by `to_dict`; SAEError for unknown keys or bad values."""
        if not isinstance(doc, dict):
            raise SAEError("the SAE training config is not a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise SAEError(f"unknown SAE training option {unknown[0]!r}")
        cfg = cls(**doc)
        cfg.check()
        return cfg

    def check(self) -> None:
        """SAEError naming the first unusable value (types too: configs come from files)."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"str": str, "int": int, "float": float, "bool": bool}[str(f.type)]
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if kind is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                ok = ok and math.isfinite(value)
            if not ok:
                raise SAEError(f"SAE option {f.name} must be a finite {f.type}, got {value!r:.40}")
        positive = ("k", "expansion", "tokens", "batch_size", "dead_tokens", "buffer_windows",
                    "checkpoint_every")  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise SAEError(f"SAE option {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "aux_k", "aux_coef", "warmup_steps", "grad_clip", "seed"):
            if getattr(self, name) < 0:
                raise SAEError(f"SAE option {name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.threshold_lr <= 1:
            raise SAEError(f"SAE option threshold_lr must be in (0, 1], got {self.threshold_lr}")
        if self.b_dec_init not in B_DEC_INITS:
            raise SAEError(f"b_dec_init must be one of {', '.join(B_DEC_INITS)}, "
                           f"got {self.b_dec_init!r:.40}")  # fmt: skip

    def check_for(self, d_in: int) -> None:
        """SAEError unless the SAE fits activations of width d_in (k < d_sae)."""
        self.check()
        d_sae = self.expansion * d_in
        if self.k >= d_sae:
            raise SAEError(f"k={self.k} must be smaller than d_sae={d_sae} "
                           f"(expansion {self.expansion} x d_in {d_in})")  # fmt: skip

    def learning_rate(self, d_sae: int) -> float:
        """`lr`, or Gao et al.'s scaling rule when it is 0."""
        return self.lr if self.lr > 0 else 2e-4 / math.sqrt(d_sae / 2**14)


B_DEC_INITS = ("geometric_median", "mean", "zeros")
