"""Pruning hyperparameters (docs/method.md §6): one frozen dataclass, validated in one place.

Each numeric field declares its allowed values in its annotation (`Range`, shared with the run
config in `sparsecircuits.config`), so every value is type-, finiteness- and range-checked.

Defaults are the paper's (k_coef, init noise, AdamW settings, temperature, batch, target loss,
16 LBFGS calibration steps) except `steps`, which the paper does not give: it is chosen so that
one task is pruned, discretised, calibrated and validated in minutes on a 2-core CPU for the
demo model (see benchmarks/prune_speed.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from sparsecircuits.config import (
    ADAM_BETA,
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Range,
    check_ranges,
)
from sparsecircuits.errors import CircuitError

if TYPE_CHECKING:
    from torch import Tensor

ABLATION_KINDS = ("mean", "zero", "resample")
LOSS_KINDS = ("task", "two_way")


@dataclass(frozen=True)
class PruneConfig:
    """Everything that defines a pruning run."""

    target_loss: Annotated[float, POSITIVE] = 0.15
    """Task loss (val, before calibration) the circuit must reach."""
    loss: str = "task"
    """Which task loss to reach and train on: 'task' (cross entropy of the correct token over
    the whole vocabulary) or 'two_way' (cross entropy among the two candidates only)."""
    ablation: str = "mean"
    """How pruned nodes are replaced: 'mean' (over pretraining data), 'zero' or 'resample'."""
    steps: Annotated[int, AT_LEAST_ONE] = 200
    """Mask optimisation steps (the LR decays linearly to 0 over them)."""
    batch_size: Annotated[int, AT_LEAST_ONE] = 64
    """Task examples per optimisation step."""
    lr: Annotated[float, POSITIVE] = 3e-3
    """Peak AdamW learning rate of the mask parameters (no warmup, linear decay)."""
    beta1: Annotated[float, ADAM_BETA] = 0.9
    """AdamW beta1."""
    beta2: Annotated[float, ADAM_BETA] = 0.95
    """AdamW beta2."""
    weight_decay: Annotated[float, NON_NEGATIVE] = 1e-3
    """AdamW decoupled weight decay on the mask parameters."""
    grad_clip: Annotated[float, POSITIVE] = 1.0
    """Clip the L2 norm of the mask gradient to this value."""
    k_coef: Annotated[float, NON_NEGATIVE] = 1e-4
    """Penalty per kept node added to the task cross entropy."""
    init_noise_bias: Annotated[float, Range(ge=-1, le=1)] = 0.1
    """Mean of the initial mask parameters (positive: every node starts kept)."""
    init_noise_scale: Annotated[float, NON_NEGATIVE] = 0.01
    """Standard deviation of the initial mask parameters."""
    heaviside_temp: Annotated[float, POSITIVE] = 1.0
    """Temperature of the sigmoid-derivative surrogate gradient of the Heaviside gate."""
    tie_qk: bool = False
    """Share one mask parameter between q channel i and k channel i of the same layer."""
    calibration_steps: Annotated[int, NON_NEGATIVE] = 16
    """LBFGS iterations fitting the logit scale + shift of the discretised circuit."""
    train_size: Annotated[int, AT_LEAST_ONE] = 512
    """Task examples in the train split (mask optimisation, calibration, attribution)."""
    val_size: Annotated[int, AT_LEAST_ONE] = 256
    """Task examples in the val split (bisection on k, losses before/after calibration)."""
    test_size: Annotated[int, AT_LEAST_ONE] = 256
    """Task examples in the test split (sufficiency and necessity)."""
    task_seed: Annotated[int, SEED] = 0
    """Seed of the task generator (the splits depend on it)."""
    seed: Annotated[int, SEED] = 0
    """Seed of the mask initialisation, batch order and resample draws."""
    mean_windows: Annotated[int, AT_LEAST_ONE] = 64
    """Pretraining windows of n_ctx tokens the mean (or resample bank) is computed over."""
    eval_batch_size: Annotated[int, AT_LEAST_ONE] = 128
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
        """Check every value (types and the Range of each numeric field); raise CircuitError
        naming the first bad one."""
        check_ranges(self, "", CircuitError)
        if self.ablation not in ABLATION_KINDS:
            raise CircuitError(
                f"unknown ablation {self.ablation!r}; use one of {', '.join(ABLATION_KINDS)}"
            )
        if self.loss not in LOSS_KINDS:
            raise CircuitError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSS_KINDS)}")
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
