"""One model + one ablation -> circuits for tasks: mask training, search on k, calibration.

`Pruner` holds what every step needs (the frozen model, its ablation values, the mask layout)
and evaluates any set of kept units on any split, so validation, controls and the attribution
baseline all measure circuits the same way. Evaluation with resample ablation draws its
replacement contexts from a fixed seed, so every k of a search sees the same draws.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import torch
from torch import Tensor
from tqdm import tqdm

from sparsecircuits.circuits.ablation import Ablation
from sparsecircuits.circuits.attribution import attribution_scores
from sparsecircuits.circuits.config import PruneConfig, loss_function
from sparsecircuits.circuits.discretize import KSearch, calibrate_logits, fit_calibration, search_k
from sparsecircuits.circuits.forward import batch_last_logits
from sparsecircuits.circuits.mask_training import MaskTraining, train_masks
from sparsecircuits.circuits.masks import MaskLayout
from sparsecircuits.circuits.task_data import TaskData
from sparsecircuits.errors import CircuitError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks.encoding import TaskBatch
from sparsecircuits.tasks.metrics import accuracy, task_loss, two_way_loss


def progress_bar(total: int, desc: str, enabled: bool, file: TextIO | None = None) -> tqdm:
    """The mask-training bar: on stderr (stdout carries the results), and it ends with a
    newline, so in a log file the next line starts on a line of its own. Off a terminal it
    redraws rarely: every redraw is one more carriage-return segment in the log."""
    file = file if file is not None else sys.stderr
    interactive = hasattr(file, "isatty") and file.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, file=file, leave=True,
                mininterval=0.1 if interactive else 30.0)


@dataclass
class PruneOutcome:
    """A pruning run on one task: the circuit (if the target was reached) and how it was found."""

    training: MaskTraining
    search: KSearch
    unit_gates: Tensor
    """0/1 gates [n_units] of the circuit (of the best k evaluated if the target was missed)."""
    nodes: list[str]
    """The circuit's nodes, in model order."""
    full_val_loss: float
    """Task loss of the whole model on val."""
    val_loss_before: float
    """Val task loss of the circuit before calibration."""
    val_loss_after: float
    """Val task loss of the circuit after calibration."""
    scale: float
    """Calibration fitted on train: both candidate logits become scale * logit + shift ..."""
    shift: float
    """... (`discretize.calibrate_logits`)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage, by stage name."""

    @property
    def reached(self) -> bool:
        return self.search.reached


@dataclass
class BaselineOutcome:
    """The attribution baseline on one task."""

    scores: Tensor
    search: KSearch
    nodes: list[str]
    seconds: float


class Pruner:
    """Prunes tasks in one frozen model under one ablation."""

    def __init__(self, model: GPT, ablation: Ablation, cfg: PruneConfig, progress: bool = False,
                 layout: MaskLayout | None = None):  # fmt: skip
        """`layout` chooses the units to prune (default: the model's nodes); `ablation` must
        give replacement values for its locations."""
        self.model = model
        self.ablation = ablation
        self.cfg = cfg
        self.progress = progress
        self.layout = layout if layout is not None else MaskLayout.for_model(model, cfg.tie_qk)

    @property
    def loss_fn(self):
        return loss_function(self.cfg.loss)

    # ------------------------------------------------------------------ evaluation
    def logits(self, batch: TaskBatch, unit_gates: Tensor | None) -> Tensor:
        """Last-position logits [N, V]; None gates = the full model."""
        if unit_gates is None:
            return batch_last_logits(self.model, batch, None, self.cfg.eval_batch_size)
        device = next(self.model.parameters()).device
        gates = unit_gates.to(device)
        gen = torch.Generator().manual_seed(self.cfg.seed + 1)

        def hooks_fn(n: int, seq: int):
            return self.layout.hooks(gates, self.ablation.values(n, seq, gen))

        return batch_last_logits(self.model, batch, hooks_fn, self.cfg.eval_batch_size)

    def loss(self, batch: TaskBatch, unit_gates: Tensor | None) -> float:
        return float(self.loss_fn(self.logits(batch, unit_gates), batch))

    def metrics(
        self, batch: TaskBatch, unit_gates: Tensor | None, scale: float = 1.0, shift: float = 0.0
    ) -> dict[str, float]:
        """Task loss and accuracy, with calibration applied when scale/shift are given."""
        logits = calibrate_logits(self.logits(batch, unit_gates), batch, scale, shift)
        return {
            "loss": float(self.loss_fn(logits, batch)),
            "task_loss": float(task_loss(logits, batch)),
            "two_way_loss": float(two_way_loss(logits, batch)),
            "accuracy": float(accuracy(logits, batch)),
        }

    # ------------------------------------------------------------------ pruning
    def prune(self, data: TaskData, require_reachable: bool = True) -> PruneOutcome:
        """Train masks on train, search k on val, calibrate on train (see module docstring).

        With `require_reachable`, a full model whose val loss misses the target is a
        CircuitError before any training (controls pass False and report what happens).
        """
        t0 = time.perf_counter()
        full_val = self.loss(data.val, None)
        if require_reachable and full_val > self.cfg.target_loss:
            other = ", the two_way loss" if self.cfg.loss == "task" else ""
            raise CircuitError(
                f"the full model's val {self.cfg.loss} loss on {data.name} is {full_val:.3f}, "
                f"above the target {self.cfg.target_loss:g}: no circuit of it can reach the "
                f"target (use a target above {full_val:.3f}{other}, or a better-trained "
                "checkpoint)"
            )
        training = self.train_masks(data)
        outcome = self.discretize(data, training, self.cfg.target_loss, full_val)
        outcome.seconds["total"] = time.perf_counter() - t0
        return outcome

    def train_masks(self, data: TaskData) -> MaskTraining:
        """The mask optimisation alone. It does not depend on the target loss, so one run
        serves every target (`discretize` per target)."""
        with progress_bar(self.cfg.steps, f"prune {data.name}", self.progress) as bar:

            def report(step: int, loss: float, kept: int) -> None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", nodes=kept, refresh=False)

            return train_masks(self.model, self.layout, self.ablation, data.train, self.cfg, report)

    def discretize(
        self, data: TaskData, training: MaskTraining, target: float, full_val: float | None = None
    ) -> PruneOutcome:
        """Search k for `target` on val over the trained scores, then calibrate on train."""
        seconds = {"train_masks": training.seconds}
        if full_val is None:
            full_val = self.loss(data.val, None)
        t1 = time.perf_counter()
        tau = training.tau
        search = search_k(
            lambda k: self.loss(data.val, self.layout.top_units(tau, k)),
            self.layout.n_units,
            target,
            start=int((tau > 0).sum()),
        )
        k = search.k if search.k is not None else search.best_k
        gates = self.layout.top_units(tau, k)
        seconds["search_k"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        scale, shift = fit_calibration(
            self.logits(data.train, gates), data.train, self.cfg.calibration_steps, self.loss_fn
        )
        val_logits = self.logits(data.val, gates)
        before = float(self.loss_fn(val_logits, data.val))
        after = float(self.loss_fn(calibrate_logits(val_logits, data.val, scale, shift), data.val))
        seconds["calibrate"] = time.perf_counter() - t2
        return PruneOutcome(
            training=training,
            search=search,
            unit_gates=gates,
            nodes=self.layout.nodes(gates),
            full_val_loss=full_val,
            val_loss_before=before,
            val_loss_after=after,
            scale=scale,
            shift=shift,
            seconds=seconds,
        )

    def baseline(self, data: TaskData, start_k: int = 1) -> BaselineOutcome:
        """Attribution baseline: rank units by |activation x gradient| on train, same search."""
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        scores = attribution_scores(
            self.model,
            self.layout,
            self.ablation,
            data.train,
            self.cfg.batch_size,
            self.cfg.loss,
            gen,
        )
        search = search_k(
            lambda k: self.loss(data.val, self.layout.top_units(scores, k)),
            self.layout.n_units,
            self.cfg.target_loss,
            start=start_k,
        )
        k = search.k if search.k is not None else search.best_k
        nodes = self.layout.nodes(self.layout.top_units(scores, k))
        return BaselineOutcome(
            scores=scores, search=search, nodes=nodes, seconds=time.perf_counter() - t0
        )
