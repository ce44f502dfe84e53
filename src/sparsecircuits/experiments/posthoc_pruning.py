"""Pruning after training vs sparsity during training (docs/usage.md).

The question people ask first about weight-sparse training: why not train a dense model and
prune it? This experiment takes a trained dense model and a trained weight-sparse one and
compares four models in one table:

- dense: the dense model as trained;
- dense, pruned (one-shot): its sparse-constrained matrices (the ones the sparse training
  constrains, `model.roles`) magnitude-pruned to exactly as many nonzero entries in total as
  the sparse model has in the same matrices. Every matrix keeps the same fraction of its
  nonzero entries (as sparse training keeps the same fraction of every matrix), the remainder
  of the budget going to the matrices with the largest fractional share, so the total is
  exact;
- dense, pruned + fine-tuned: the one-shot model trained further on the pretraining data with
  its mask fixed (pruned entries stay exactly zero), for a budget of tokens (10% of the sparse
  model's training tokens by default);
- sparse: the weight-sparse model as trained.

Each row: nonzeros, pretraining val loss (the same val windows for all four), tasks solved
(accuracy >= 0.85 on the task's val split) and circuit sizes (`circuit_sizes.py`: nodes and
edges at each target loss, per task, and their geometric mean).

The fine-tune is a short loop of its own rather than `train()`: the trainer's projection
re-selects the largest entries after every step (weights may leave and enter the support),
which is sparse training itself, not fine-tuning a fixed pruned network. It reuses the
trainer's optimizer, batches, learning-rate schedule, gradient clipping and val loss.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from sparsecircuits import checkpoint as ckpt
from sparsecircuits.checkpoint import Loaded, load_checkpoint
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.pipeline import geometric_mean
from sparsecircuits.config import RunConfig
from sparsecircuits.errors import ConfigError
from sparsecircuits.experiments.circuit_sizes import (
    CircuitSizer,
    SizePoint,
    load_tasks,
    point_dicts,
)
from sparsecircuits.fileformat import atomic_write_text, check_writable_dir, write_json
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks.registry import PAPER_TASKS, get_tasks
from sparsecircuits.train import schedule
from sparsecircuits.train.sparsity import sparse_parameters, topk_mask
from sparsecircuits.train.trainer import build_optimizer, clip_grad_rms_, evaluate_loss

log = logging.getLogger(__name__)

SOLVED_ACCURACY = 0.85
"""A task counts as solved at this val accuracy or above."""
MODELS = ("dense", "dense_pruned", "dense_pruned_finetuned", "sparse")
LABELS = {
    "dense": "dense",
    "dense_pruned": "dense, pruned (one-shot)",
    "dense_pruned_finetuned": "dense, pruned + fine-tuned",
    "sparse": "sparse (trained)",
}


@dataclass(frozen=True)
class PosthocPruning:
    """What the experiment compares and how."""

    sparse: Path
    """The weight-sparse checkpoint (or run directory)."""
    dense: Path
    """The dense checkpoint it is compared with (same tokenizer and context length)."""
    tasks: tuple[str, ...] = ("single_double_quote",)
    """Tasks whose circuits are measured in every model."""
    solved_tasks: tuple[str, ...] = PAPER_TASKS
    """Tasks counted for "tasks solved"."""
    targets: tuple[float, ...] = (0.3,)
    """Target losses of the circuits."""
    prune: PruneConfig = field(default_factory=lambda: PruneConfig(loss="two_way"))
    """How circuits are found (the loss kind of the targets, steps, ...)."""
    finetune_fraction: float = 0.1
    """Fine-tuning tokens as a fraction of the sparse model's training tokens."""
    max_finetune_steps: int | None = None
    """Cap on fine-tuning steps (for tests and quick runs); None = the budget's steps."""
    finetune_lr_scale: float = 0.1
    """Peak fine-tuning learning rate, as a fraction of the dense run's peak."""

    def check(self) -> PosthocPruning:
        if not 0 <= self.finetune_fraction <= 10:
            raise ConfigError(
                f"--finetune-fraction must be in [0, 10], got {self.finetune_fraction}"
            )
        if self.max_finetune_steps is not None and self.max_finetune_steps < 0:
            raise ConfigError(f"--max-finetune-steps must be >= 0, got {self.max_finetune_steps}")
        if not 0 < self.finetune_lr_scale <= 10:
            raise ConfigError(
                f"--finetune-lr-scale must be in (0, 10], got {self.finetune_lr_scale}"
            )
        if not self.targets or any(not t > 0 for t in self.targets):
            raise ConfigError(f"--targets must be positive numbers, got {self.targets}")
        if not self.tasks or not self.solved_tasks:
            raise ConfigError("--tasks and --solved-tasks must each name at least one task")
        get_tasks(list(self.tasks) + list(self.solved_tasks))  # unknown names fail now
        return self


# ------------------------------------------------------------------------------ pruning


def sparse_nonzeros(model: GPT) -> int:
    """Nonzero entries of the sparse-constrained matrices (`model.roles`)."""
    return sum(int(sp.param.detach().count_nonzero()) for sp in sparse_parameters(model))


def keep_counts(numels: list[int], budget: int) -> list[int]:
    """Entries to keep per matrix: the same fraction budget/total everywhere, the remainder
    to the largest fractional parts (ties: earlier matrix), so the sum is exactly `budget`."""
    total = sum(numels)
    if not 0 <= budget <= total:
        raise ConfigError(f"cannot keep {budget:,} of {total:,} entries")
    shares = [n * budget / total for n in numels]
    counts = [math.floor(s) for s in shares]
    order = sorted(range(len(numels)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[: budget - sum(counts)]:
        counts[i] += 1
    return counts


@torch.no_grad()
def magnitude_prune_(model: GPT, budget: int) -> dict[str, torch.Tensor]:
    """Zero all but the `budget` largest-magnitude entries (per-matrix quotas, `keep_counts`)
    of the sparse-constrained matrices, in place; returns the boolean masks by name."""
    params = sparse_parameters(model)
    # Shares of each matrix's nonzero entries (all of them in a trained dense model): an entry
    # that is already zero is never counted as kept, so the total is exactly `budget`.
    counts = keep_counts([int(sp.param.count_nonzero()) for sp in params], budget)
    masks = {}
    for sp, k in zip(params, counts, strict=True):
        w = sp.param
        if k == 0:  # an all-zero matrix (topk_mask needs k >= 1)
            mask = torch.zeros_like(w, dtype=torch.bool)
        else:
            mask = topk_mask(w.detach().abs().flatten(), k).view_as(w)
        w.mul_(mask)
        masks[sp.name] = mask
    return masks


def finetune_steps(exp: PosthocPruning, sparse: Loaded, dense_cfg: RunConfig) -> int:
    """Steps of the dense run's batch that make `finetune_fraction` of the sparse model's
    training tokens (capped by `max_finetune_steps`)."""
    sc = sparse.config
    tokens = int(sparse.meta.get("step", sc.train.steps)) * sc.train.batch_size * sc.model.n_ctx
    per_step = dense_cfg.train.batch_size * dense_cfg.model.n_ctx
    steps = math.ceil(exp.finetune_fraction * tokens / per_step)
    return steps if exp.max_finetune_steps is None else min(steps, exp.max_finetune_steps)


def finetune_fixed_mask_(
    model: GPT, masks: dict[str, torch.Tensor], cfg: RunConfig, steps: int, lr_scale: float,
    first_step: int, progress: bool = False,
) -> list[float]:  # fmt: skip
    """Train `model` for `steps` AdamW steps on the pretraining train shard, re-applying the
    masks after every step so pruned entries stay zero; returns the loss per step.

    Batches continue the dense run's data stream (`get_batch` at steps first_step, ...); the
    learning rate has the run's warmup-then-decay shape at lr_scale x its peak."""
    from sparsecircuits.data.prepare import prepare_data
    from sparsecircuits.data.shards import TokenShard, get_batch

    data = prepare_data(cfg.data, cfg.model.vocab_size, progress=False)
    shard = TokenShard(data.shards["train"])
    device = next(model.parameters()).device
    params = {sp.name: sp.param for sp in sparse_parameters(model)}
    optim = replace(cfg.optim, lr=cfg.optim.lr * lr_scale)
    opt = build_optimizer(model, cfg)
    losses = []
    model.train()
    for i in tqdm(range(steps), desc="fine-tune", disable=not progress):
        lr = schedule.learning_rate(i, steps, 1.0, optim)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = get_batch(shard, cfg.train.batch_size, cfg.model.n_ctx, cfg.train.seed,
                          first_step + i).to(device)  # [batch, n_ctx + 1]  # fmt: skip
        logits = model(batch[:, :-1])  # [batch, n_ctx, vocab]
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_rms_(list(model.parameters()), cfg.optim.grad_clip_rms)
        opt.step()
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ConfigError(f"fine-tuning diverged at step {i + 1}; lower --finetune-lr-scale")
        losses.append(value)
    model.eval()
    return losses


def _save_model(model: GPT, base: Loaded, target: Path, meta: dict[str, Any]) -> Loaded:
    """Write `model` as a checkpoint with the dense run's config (a content hash of its own,
    so ablation means are never shared with the dense model) and load it back."""
    ckpt.write_checkpoint(target, base.config, model.state_dict(), base.tokenizer.to_str(),
                          {"step": base.meta.get("step"), **meta})  # fmt: skip
    return load_checkpoint(target)


def pruned_models(
    exp: PosthocPruning, sparse: Loaded, dense: Loaded, out: Path, progress: bool
) -> tuple[Loaded, Loaded, dict[str, Any]]:
    """The one-shot and the fine-tuned pruned dense models (written under `out`; a fine-tuned
    model already there with the same recipe is reused), and what was done."""
    import copy

    budget = sparse_nonzeros(sparse.model)
    steps = finetune_steps(exp, sparse, dense.config)
    recipe = {"source": str(dense.path), "source_hash": dense.content_hash, "budget": budget,
              "finetune_steps": steps, "finetune_lr_scale": exp.finetune_lr_scale}  # fmt: skip
    model = copy.deepcopy(dense.model).float()
    masks = magnitude_prune_(model, budget)
    oneshot = _save_model(model, dense, out / "dense_pruned" / ckpt.CHECKPOINT_DIR,
                          {"posthoc_pruning": {**recipe, "finetune_steps": 0}})  # fmt: skip
    tuned_dir = out / "dense_pruned_finetuned" / ckpt.CHECKPOINT_DIR
    losses: list[float] | None = None
    if ckpt.run_has_checkpoint(tuned_dir.parent) and \
            ckpt.read_meta(tuned_dir).get("posthoc_pruning") == recipe:  # fmt: skip
        log.info("reusing %s", tuned_dir)
        tuned = load_checkpoint(tuned_dir)
    else:
        first = int(dense.meta.get("step", dense.config.train.steps))
        losses = finetune_fixed_mask_(model, masks, dense.config, steps, exp.finetune_lr_scale,
                                      first, progress)  # fmt: skip
        tuned = _save_model(model, dense, tuned_dir, {"posthoc_pruning": recipe,
                                                      "finetune_loss": losses})  # fmt: skip
    done = {**recipe, "finetune_tokens": steps * dense.config.train.batch_size
            * dense.config.model.n_ctx}  # fmt: skip
    return oneshot, tuned, done


# ------------------------------------------------------------------------------ measuring


def tasks_solved(loaded: Loaded, tasks: tuple[str, ...]) -> dict[str, float | None]:
    """Val accuracy per task (None: the tokenizer cannot express it)."""
    from sparsecircuits.tasks.evaluate import evaluate_tasks

    results = evaluate_tasks(loaded.model, list(tasks), loaded.tokenizer, split="val",
                             n_ctx=loaded.config.model.n_ctx)  # fmt: skip
    return {r.task: (r.metrics.accuracy if r.metrics is not None else None) for r in results}


def run_posthoc_pruning(exp: PosthocPruning, out: Path, progress: bool = True) -> dict[str, Any]:
    """Build the pruned models, measure all four, write results.json, table.md, figure."""
    exp.check()
    check_writable_dir(out, "--out", ConfigError)
    sparse, dense = load_checkpoint(exp.sparse), load_checkpoint(exp.dense)
    if sparse.tokenizer.to_str() != dense.tokenizer.to_str():
        raise ConfigError(f"{exp.sparse} and {exp.dense} have different tokenizers: tasks and "
                          "circuits would not be comparable")  # fmt: skip
    if sparse.config.model.n_ctx != dense.config.model.n_ctx:
        raise ConfigError("the sparse and dense models have different n_ctx")
    out.mkdir(parents=True, exist_ok=True)
    oneshot, tuned, recipe = pruned_models(exp, sparse, dense, out, progress)
    models = {"dense": dense, "dense_pruned": oneshot, "dense_pruned_finetuned": tuned,
              "sparse": sparse}  # fmt: skip

    from sparsecircuits.data.prepare import prepare_data
    from sparsecircuits.data.shards import TokenShard

    val = TokenShard(prepare_data(dense.config.data, dense.config.model.vocab_size,
                                  progress=False).shards["val"])  # fmt: skip
    circuit_tasks = get_tasks(list(exp.tasks))
    task_data, task_errors = load_tasks(circuit_tasks, dense, exp.prune)
    rows, points = {}, {}
    for name, loaded in models.items():
        log.info("measuring %s", name)
        accuracy = tasks_solved(loaded, exp.solved_tasks)
        sizer = CircuitSizer(loaded, exp.prune, progress=progress)
        pts = [p for data in task_data.values()
               for p in sizer.sizes(data, list(exp.targets), out / "sizes" / name)]  # fmt: skip
        points[name] = point_dicts(pts)
        rows[name] = {
            "label": LABELS[name],
            "path": str(loaded.path),
            "nonzeros": sparse_nonzeros(loaded.model),
            "val_loss": evaluate_loss(loaded.model, val, dense.config, "cpu"),
            "tasks_solved": sum(a is not None and a >= SOLVED_ACCURACY for a in accuracy.values()),
            "accuracy": accuracy,
            "geomean_edges": {str(t): _geomean(pts, t) for t in exp.targets},
        }
    results = {
        "sparse": str(sparse.path),
        "dense": str(dense.path),
        "recipe": recipe,
        "solved_accuracy": SOLVED_ACCURACY,
        "tasks": list(task_data),
        "task_errors": task_errors,
        "targets": list(exp.targets),
        "prune": exp.prune.to_dict(),
        "models": rows,
        "points": points,
    }
    write_json(out / "results.json", results, indent=2)
    atomic_write_text(out / "table.md", table(results))
    figure(results, out / "posthoc.png")
    return results


def _geomean(points: list[SizePoint], target: float) -> float:
    """Geometric mean of edges at `target` over the tasks; NaN if any circuit missed it."""
    at = [p for p in points if p.target == target]
    if not at or not all(p.reached for p in at):
        return math.nan
    return geometric_mean([p.edges for p in at])


def table(results: dict[str, Any]) -> str:
    """The markdown table: one row per model."""
    targets = results["targets"]
    n_solved = len(next(iter(results["models"].values()))["accuracy"])
    head = ["model", "nonzeros", "val loss", f"tasks solved (of {n_solved})"]
    head += [f"edges @ {t:g} (geomean)" for t in targets]
    tasks = results["tasks"]
    by_model = results["points"]
    head += [f"{task} nodes/edges @ {t:g}" for task in tasks for t in targets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results["models"].items():
        cells = [row["label"], f"{row['nonzeros']:,}", f"{row['val_loss']:.4f}",
                 str(row["tasks_solved"])]  # fmt: skip
        cells += [_num(row["geomean_edges"][str(t)]) for t in targets]
        for task in tasks:
            for t in targets:
                p = next(p for p in by_model[name] if p["task"] == task and p["target"] == t)
                miss = "" if p["reached"] else " (missed)"
                cells.append(f"{p['nodes']}/{p['edges']}{miss}")
        lines.append("| " + " | ".join(cells) + " |")
    r = results["recipe"]
    lines.append("")
    lines.append(f"Pruned to {r['budget']:,} nonzeros (the sparse model's, in the same "
                 f"matrices); fine-tuned {r['finetune_steps']} steps = {r['finetune_tokens']:,} "
                 f"tokens with the mask fixed. Circuits: {results['prune']['loss']} loss, "
                 f"{results['prune']['ablation']} ablation; solved = val accuracy >= "
                 f"{results['solved_accuracy']}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.1f}"


def figure(results: dict[str, Any], path: Path) -> Path:
    """Val loss (left) and geometric-mean circuit edges per target (right), one bar per model."""
    from sparsecircuits.experiments.plots import _save, plt

    names = list(results["models"])
    labels = [results["models"][n]["label"].replace(", ", ",\n") for n in names]
    colors = ["tab:red", "tab:orange", "tab:olive", "tab:blue"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    losses = [results["models"][n]["val_loss"] for n in names]
    left.bar(range(len(names)), losses, color=colors)
    for i, n in enumerate(names):
        solved = results["models"][n]["tasks_solved"]
        left.annotate(f"{losses[i]:.3f}\n{solved} solved", (i, losses[i]), ha="center",
                      fontsize=8, xytext=(0, 2), textcoords="offset points")  # fmt: skip
    left.set_xticks(range(len(names)), labels, fontsize=7)
    left.set_ylabel("pretraining val loss (nats/token)")
    left.set_ylim(min(losses) * 0.9, max(losses) * 1.1)
    width = 0.8 / max(1, len(results["targets"]))
    for j, t in enumerate(results["targets"]):
        edges = [results["models"][n]["geomean_edges"][str(t)] for n in names]
        xs = [i + (j - (len(results["targets"]) - 1) / 2) * width for i in range(len(names))]
        right.bar(xs, [0 if math.isnan(e) else e for e in edges], width,
                  color=colors, alpha=0.5 + 0.5 * (j + 1) / len(results["targets"]),
                  label=f"target {t:g}")  # fmt: skip
        for x, e in zip(xs, edges, strict=True):
            right.annotate("missed" if math.isnan(e) else f"{e:.0f}", (x, 0 if math.isnan(e)
                           else e), ha="center", fontsize=7, xytext=(0, 2),
                           textcoords="offset points")  # fmt: skip
    right.set_xticks(range(len(names)), labels, fontsize=7)
    right.set_ylabel(f"circuit edges, geometric mean over {len(results['tasks'])} task(s)")
    fig.suptitle("Pruning a dense model after training vs training weight-sparse")
    left.grid(True, axis="y", alpha=0.3)
    return _save(fig, right, path)
