"""From learned mask scores to one circuit: search on k, then calibrate (docs/method.md §6).

Search: units are ranked by score (mask parameter tau, or an attribution); keeping the top k
gives a circuit whose val task loss is `loss_at(k)`. The smallest k reaching the target is
found by an exponential search from a starting k (the units the trained mask keeps), halving
while the target holds or doubling until it does, then bisection between the last failing and
the first passing k. Like any bisection it assumes the loss falls as k grows; every evaluated
k is recorded so a reader can check.

Calibration: the discretised circuit's last-position logits z are replaced by

    z' = scale * z + shift * 1[token is one of the example's two candidates]

fitted with LBFGS on the train split. A shift added to every logit would not change a softmax,
so the shift acts on the two candidates the task defines (never on the label): it moves
probability between "one of the two choices" and "the rest of the vocabulary", the other way
besides sharpness in which mean ablation miscalibrates a circuit. scale = exp(s) stays positive,
so calibration can never turn a wrong answer into a right one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sparsecircuits.tasks.metrics import HasCandidates, task_loss

LossFn = Callable[..., Tensor]


@dataclass
class KSearch:
    """The outcome of the search on k."""

    k: int | None
    """Smallest number of units whose val loss reaches the target; None if none does."""
    loss: float
    """Val loss at k (at best_k when the target was not reached)."""
    best_k: int
    """The evaluated k with the lowest loss."""
    best_loss: float
    evaluations: dict[int, float] = field(default_factory=dict)
    """Every k evaluated and its val loss, in evaluation order."""

    @property
    def reached(self) -> bool:
        return self.k is not None


def search_k(loss_at: Callable[[int], float], n_units: int, target: float, start: int) -> KSearch:
    """Smallest k in [0, n_units] with loss_at(k) <= target (see module docstring)."""
    evals: dict[int, float] = {}

    def passes(k: int) -> bool:
        if k not in evals:
            evals[k] = float(loss_at(k))
        return evals[k] <= target

    def result(k: int | None) -> KSearch:
        best = min(evals, key=lambda j: (evals[j], j))
        return KSearch(k, evals[k if k is not None else best], best, evals[best], evals)

    k = min(max(start, 1), n_units)
    if passes(k):
        hi, lo = k, -1
        while hi > 0:
            k = hi // 2
            if passes(k):
                hi = k
            else:
                lo = k
                break
        if lo < 0:
            return result(hi)  # even k = 0 reaches the target
    else:
        lo = k
        while True:
            if lo >= n_units:
                return result(None)
            k = min(2 * lo, n_units)
            if passes(k):
                hi = k
                break
            lo = k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return result(hi)


def calibrate_logits(logits: Tensor, batch: HasCandidates, scale: float, shift: float) -> Tensor:
    """scale * logits + shift on each row's two candidate logits: [N, V] -> [N, V]."""
    return _calibrated(logits, batch, torch.tensor(math.log(scale)), torch.tensor(shift))


def _calibrated(logits: Tensor, batch: HasCandidates, log_scale: Tensor, shift: Tensor) -> Tensor:
    ids = torch.stack([batch.correct_id, batch.wrong_id], 1).to(logits.device)  # [N, 2]
    bump = torch.zeros_like(logits).scatter(1, ids, 1.0)  # [N, V]: 1 at both candidates
    return logits * log_scale.exp() + shift * bump


def fit_calibration(
    logits: Tensor, batch: HasCandidates, steps: int = 16, loss_fn: LossFn = task_loss
) -> tuple[float, float]:
    """(scale, shift) minimising the task loss of `logits` [N, V], by `steps` LBFGS iterations."""
    if steps == 0:
        return 1.0, 0.0
    logits = logits.detach().float()
    log_scale = torch.zeros((), requires_grad=True)
    shift = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_scale, shift], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(_calibrated(logits, batch, log_scale, shift), batch)
        loss.backward()
        return loss

    before = float(loss_fn(logits, batch))
    opt.step(closure)
    with torch.no_grad():
        after = float(loss_fn(_calibrated(logits, batch, log_scale, shift), batch))
    if not math.isfinite(after) or after > before:
        return 1.0, 0.0  # a failed fit must not make the circuit look worse than it is
    return log_scale.exp().item(), shift.item()
