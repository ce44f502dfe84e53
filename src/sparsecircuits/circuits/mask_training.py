"""Learning the node masks (docs/method.md §6).

    loss = task_cross_entropy(masked model) + k_coef * (number of kept nodes)

minimised over the mask parameters tau only (the model is frozen) with AdamW, gradient-norm
clipping and a linear LR decay to zero without warmup; tau is clamped to [-1, 1] after every
step. Batches are drawn from the task's train split; each epoch shuffles the examples and sorts
groups of four batches by length, so a batch pads little while still mixing the whole split.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecircuits.circuits.ablation import Ablation
from sparsecircuits.circuits.config import PruneConfig, loss_function
from sparsecircuits.circuits.forward import last_logits
from sparsecircuits.circuits.masks import MaskLayout, NodeMasks
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks.encoding import TaskBatch

BUCKET_BATCHES = 4  # batches sorted by length together


@dataclass
class MaskTraining:
    """The outcome of mask optimisation."""

    tau: Tensor
    """Final mask parameters [n_units] (CPU)."""
    task_loss: list[float]
    """Train task cross entropy per step (masked model)."""
    kept_nodes: list[int]
    """Nodes kept by the hard gates per step."""
    seconds: float
    """Wall time of the optimisation."""

    @property
    def steps_per_s(self) -> float:
        return len(self.task_loss) / self.seconds if self.seconds > 0 else float("inf")


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Model parameters need no gradient inside the block (restored afterwards)."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def bucketed_batches(
    lengths: Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """Endless index batches [<= batch_size]: shuffled per epoch, length-sorted in buckets."""
    n = len(lengths)
    batch_size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        batches: list[Tensor] = []
        group = batch_size * BUCKET_BATCHES
        for start in range(0, n - batch_size + 1, group):
            idx = perm[start : start + group]
            idx = idx[torch.argsort(lengths[idx], stable=True)]
            batches += [b for b in idx.split(batch_size) if len(b) == batch_size]
        for i in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[i]


def train_masks(
    model: GPT,
    layout: MaskLayout,
    ablation: Ablation,
    train: TaskBatch,
    cfg: PruneConfig,
    progress: Callable[[int, float, int], None] | None = None,
) -> MaskTraining:
    """Optimise the masks on the train split; `progress(step, task_loss, kept)` after each step."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    masks = NodeMasks(layout, cfg.init_noise_bias, cfg.init_noise_scale, cfg.heaviside_temp, gen)
    masks.to(device)
    opt = torch.optim.AdamW(
        [masks.tau], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / cfg.steps)
    loss_fn = loss_function(cfg.loss)
    batches = bucketed_batches(train.lengths, cfg.batch_size, gen)
    losses: list[float] = []
    kept: list[int] = []
    start = time.perf_counter()
    with frozen(model):
        for step in range(cfg.steps):
            sub = train.select(next(batches)).to(device)
            reps = ablation.values(len(sub), sub.tokens.shape[1], gen)
            hooks, gates = masks.hooks(reps)
            logits = last_logits(model, sub.tokens, sub.lengths, hooks)  # [batch, vocab]
            ce = loss_fn(logits, sub)
            n_kept = layout.kept_nodes(gates)
            loss = ce + cfg.k_coef * n_kept
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([masks.tau], cfg.grad_clip)
            opt.step()
            sched.step()
            masks.clamp_()
            losses.append(ce.item())
            kept.append(int(n_kept.item()))
            if progress is not None:
                progress(step, losses[-1], kept[-1])
    seconds = time.perf_counter() - start
    return MaskTraining(masks.tau.detach().cpu().clone(), losses, kept, seconds)
