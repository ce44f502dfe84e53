"""Pruning hyperparameters (PAPER_NOTES §6): one frozen dataclass, validated in one place.

Defaults are the paper's (k_coef, init noise, AdamW settings, temperature, batch, target loss,
16 LBFGS calibration steps) except `steps`, which the paper does not give: it is chosen so that
one task is pruned, discretised, calibrated and validated in minutes on a 2-core CPU for the
demo model (see benchmarks/prune_speed.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparsecircuits.errors import CircuitError

if TYPE_CHECKING:
    from torch import Tensor

ABLATION_KINDS = ("mean", "zero", "resample")
LOSS_KINDS = ("task", "two_way")


@dataclass(frozen=True)
class PruneConfig:
    """Everything that defines a pruning run."""

    target_loss: float = 0.15
    """Task loss (val, before calibration) the circuit must reach."""
    loss: str = "task"
    """Which task loss to reach and train on: 'task' (cross entropy of the correct token over
    the whole vocabulary) or 'two_way' (cross entropy among the two candidates only)."""
    ablation: str = "mean"
    """How pruned nodes are replaced: 'mean' (over pretraining data), 'zero' or 'resample'."""
    steps: int = 200
    """Mask optimisation steps (the LR decays linearly to 0 over them)."""
    batch_size: int = 64
    """Task examples per optimisation step."""
    lr: float = 3e-3
    """Peak AdamW learning rate of the mask parameters (no warmup, linear decay)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    weight_decay: float = 1e-3
    """AdamW decoupled weight decay on the mask parameters."""
    grad_clip: float = 1.0
    """Clip the L2 norm of the mask gradient to this value."""
    k_coef: float = 1e-4
    """Penalty per kept node added to the task cross entropy."""
    init_noise_bias: float = 0.1
    """Mean of the initial mask parameters (positive: every node starts kept)."""
    init_noise_scale: float = 0.01
    """Standard deviation of the initial mask parameters."""
    heaviside_temp: float = 1.0
    """Temperature of the sigmoid-derivative surrogate gradient of the Heaviside gate."""
    tie_qk: bool = False
    """Share one mask parameter between q channel i and k channel i of the same layer."""
    calibration_steps: int = 16
    """LBFGS iterations fitting the logit scale + shift of the discretised circuit."""
    train_size: int = 512
    """Task examples in the train split (mask optimisation, calibration, attribution)."""
    val_size: int = 256
    """Task examples in the val split (bisection on k, losses before/after calibration)."""
    test_size: int = 256
    """Task examples in the test split (sufficiency and necessity)."""
    task_seed: int = 0
    """Seed of the task generator (the splits depend on it)."""
    seed: int = 0
    """Seed of the mask initialisation, batch order and resample draws."""
    mean_windows: int = 64
    """Pretraining windows of n_ctx tokens the mean (or resample bank) is computed over."""
    eval_batch_size: int = 128
    """Examples per forward pass when evaluating (no gradients)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> PruneConfig:
        """A copy with fields changed, validated (unknown field names are a CircuitError)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise CircuitError(f"unknown pruning option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes).validate()

    def validate(self) -> PruneConfig:
        """Check every value; raise CircuitError naming the first bad one."""
        if self.ablation not in ABLATION_KINDS:
            raise CircuitError(
                f"unknown ablation {self.ablation!r}; use one of {', '.join(ABLATION_KINDS)}"
            )
        if self.loss not in LOSS_KINDS:
            raise CircuitError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSS_KINDS)}")
        if not self.target_loss > 0:
            raise CircuitError(f"target loss must be positive, got {self.target_loss}")
        for name in (
            "steps",
            "batch_size",
            "train_size",
            "val_size",
            "test_size",
            "mean_windows",
            "eval_batch_size",
        ):
            if getattr(self, name) < 1:
                raise CircuitError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "grad_clip", "heaviside_temp"):
            if not getattr(self, name) > 0:
                raise CircuitError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("k_coef", "weight_decay", "init_noise_scale", "calibration_steps"):
            if getattr(self, name) < 0:
                raise CircuitError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise CircuitError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not -1 <= self.init_noise_bias <= 1:
            raise CircuitError(f"init_noise_bias must be in [-1, 1], got {self.init_noise_bias}")
        return self


def loss_function(kind: str) -> Callable[..., Tensor]:
    """The metric a PruneConfig.loss names: f(last_logits [N, V], batch, reduction)."""
    from sparsecircuits.tasks.metrics import task_loss, two_way_loss

    return {"task": task_loss, "two_way": two_way_loss}[kind]


def config_from_dict(values: dict[str, Any]) -> PruneConfig:
    """PruneConfig from a plain dict (a circuit.json's hyperparameters)."""
    if not isinstance(values, dict):
        raise CircuitError("pruning hyperparameters must be a mapping")
    return PruneConfig().replace(**values)
