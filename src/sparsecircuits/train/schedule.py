"""Schedules as pure functions of the step: kept-weight fraction and learning rate (§3)."""

from __future__ import annotations

import math

from sparsecircuits.config import OptimConfig, SparsityConfig


def weight_fraction(step: int, total_steps: int, cfg: SparsityConfig) -> float:
    """Fraction of weights kept after optimiser step `step` (0-based).

    Linear anneal from 1.0 (dense) at the first step to the target at
    `anneal_fraction * total_steps`, then constant.
    """
    target = cfg.weight_fraction
    anneal_steps = cfg.anneal_fraction * total_steps
    if target >= 1.0 or anneal_steps <= 0 or step + 1 >= anneal_steps:
        return target
    progress = (step + 1) / anneal_steps
    return 1.0 + (target - 1.0) * progress


def learning_rate(step: int, total_steps: int, fraction: float, cfg: OptimConfig) -> float:
    """Warmup-then-linear-decay ('sharkfin') x 1/sqrt(current kept fraction).

    Sparser models need a larger step size; warmup is what keeps the early, dense steps stable.
    """
    warmup = max(1, math.ceil(cfg.warmup_fraction * total_steps))
    if step < warmup:
        shape = (step + 1) / warmup
    else:
        progress = (step - warmup) / max(1, total_steps - warmup)
        shape = 1.0 + (cfg.final_lr_fraction - 1.0) * progress
    return cfg.lr * shape / math.sqrt(fraction)
