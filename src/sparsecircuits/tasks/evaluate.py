"""Evaluate a model on tasks through a `logits_fn(tokens [N, T]) -> logits [N, T, V]`.

The model is only a function here, so the same code scores the real GPT, a scripted model in
tests, and a masked model in the pruner. A task that cannot be expressed in the tokenizer is
reported as such instead of aborting the evaluation of the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import SplitSizes, Task, check_split
from sparsecircuits.tasks.encoding import TaskBatch, encode_examples
from sparsecircuits.tasks.metrics import accuracy, last_position_logits, task_loss, two_way_loss
from sparsecircuits.tasks.registry import get_task

if TYPE_CHECKING:
    from tokenizers import Tokenizer

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TaskMetrics:
    """Metrics of one task on one set of examples."""

    n: int
    """Number of examples."""
    task_loss: float
    """Mean cross entropy of the correct token over the full vocabulary."""
    two_way_loss: float
    """Mean cross entropy of the correct token among {correct, wrong}."""
    accuracy: float
    """Share with logit(correct) > logit(wrong) (ties count 1/2)."""
    accuracy_by_label: tuple[float, ...]
    """Accuracy within class 0 and class 1 (NaN for a class without examples)."""
    n_truncated: int = 0
    """Contexts that were cut on the left to fit n_ctx."""


@dataclass(frozen=True)
class TaskResult:
    """A task's row in an evaluation: metrics, or why it could not be run."""

    task: str
    source: str
    split: str
    metrics: TaskMetrics | None
    error: str | None = None
    """'not expressible: <reason>' when the task does not fit the tokenizer."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.metrics is not None:
            # JSON has no NaN: a class without examples has accuracy null.
            out["metrics"]["accuracy_by_label"] = [
                None if math.isnan(a) else a for a in self.metrics.accuracy_by_label
            ]
        return out


def load_task_batch(
    task: Task | str,
    tokenizer: Tokenizer,
    split: str = "train",
    n: int | None = None,
    n_ctx: int | None = None,
    sizes: SplitSizes | None = None,
    seed: int = 0,
) -> TaskBatch:
    """The first `n` examples of a split (default: its size in `sizes`), checked and encoded.

    Only that split is generated and checked: the other splits' sizes do not change which
    examples a split holds (see `splits.py`), so this equals slicing `task.splits(sizes)`.
    Raises TaskError if the task cannot be expressed in the tokenizer.
    """
    check_split(split)
    task = get_task(task) if isinstance(task, str) else task
    if n is not None and n < 1:
        raise TaskError(f"n must be >= 1, got {n}")
    if task.finite:  # a file: its split holds what the file holds
        examples = task.splits(seed=seed, tokenizer=tokenizer).get(split)[:n]
    else:
        n = (sizes or SplitSizes()).get(split) if n is None else n
        only = replace(SplitSizes(train=0, val=0, test=0), **{split: n})
        examples = task.splits(only, seed=seed, tokenizer=tokenizer).get(split)
    if not examples:
        raise TaskError(f"task {task.name} has no {split} examples")
    return encode_examples(examples, tokenizer, n_ctx=n_ctx)


@torch.no_grad()
def evaluate_batch(
    logits_fn: LogitsFn,
    batch: TaskBatch,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> TaskMetrics:
    """Run `logits_fn` over `batch` in chunks and average the metrics over all examples."""
    if batch_size < 1:
        raise TaskError(f"batch_size must be >= 1, got {batch_size}")
    losses, two_way, scores = [], [], []
    for start in range(0, len(batch), batch_size):
        sub = batch.select(slice(start, start + batch_size)).to(device)
        logits = logits_fn(sub.tokens)  # [n, T, V]
        last = last_position_logits(logits, sub.lengths)  # [n, V]
        losses.append(task_loss(last, sub, reduction="none").cpu())
        two_way.append(two_way_loss(last, sub, reduction="none").cpu())
        scores.append(accuracy(last, sub, reduction="none").cpu())
    acc = torch.cat(scores)
    by_label = tuple(
        float(acc[batch.label == c].mean()) if bool((batch.label == c).any()) else math.nan
        for c in (0, 1)
    )
    return TaskMetrics(
        n=len(batch),
        task_loss=float(torch.cat(losses).mean()),
        two_way_loss=float(torch.cat(two_way).mean()),
        accuracy=float(acc.mean()),
        accuracy_by_label=by_label,
        n_truncated=batch.n_truncated,
    )


def evaluate_tasks(
    logits_fn: LogitsFn,
    tasks: Sequence[Task | str],
    tokenizer: Tokenizer,
    split: str = "val",
    n: int | None = None,
    n_ctx: int | None = None,
    sizes: SplitSizes | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[TaskResult]:
    """One result per task; unknown names raise, inexpressible tasks become error rows."""
    check_split(split)
    if n is not None and n < 1:
        raise TaskError(f"n must be >= 1, got {n}")
    resolved = [get_task(t) if isinstance(t, str) else t for t in tasks]
    results = []
    for task in resolved:
        try:
            batch = load_task_batch(task, tokenizer, split, n, n_ctx, sizes, seed)
        except TaskError as exc:
            results.append(
                TaskResult(task.name, task.source, split, None, f"not expressible: {exc}")
            )
            continue
        metrics = evaluate_batch(logits_fn, batch, batch_size, device)
        results.append(TaskResult(task.name, task.source, split, metrics))
    return results


def results_table(results: list[TaskResult]) -> str:
    """A plain-text table: task, n, task loss, two-way loss, accuracy (or why it did not run)."""
    width = max([len("task")] + [len(r.task) for r in results])
    rows = [f"{'task':<{width}}  {'n':>5}  {'task loss':>9}  {'two-way':>8}  {'accuracy':>8}"]
    for r in results:
        m = r.metrics
        if m is None:
            rows.append(f"{r.task:<{width}}  {r.error}")
            continue
        note = f"  ({m.n_truncated} truncated to n_ctx)" if m.n_truncated else ""
        rows.append(
            f"{r.task:<{width}}  {m.n:>5}  {m.task_loss:>9.4f}  {m.two_way_loss:>8.4f}  "
            f"{m.accuracy:>8.3f}{note}"
        )
    scored = [r.metrics for r in results if r.metrics is not None]
    if len(scored) > 1:
        mean = sum(m.task_loss for m in scored) / len(scored)
        acc = sum(m.accuracy for m in scored) / len(scored)
        rows.append(f"{'mean':<{width}}  {'':>5}  {mean:>9.4f}  {'':>8}  {acc:>8.3f}")
    return "\n".join(rows)
