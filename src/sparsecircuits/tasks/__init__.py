"""The task suite: binary next-token choices on Python code, the instrument circuits are
measured with (docs/method.md §4).

- `get_task(name)` / `all_tasks()`: tasks by name (a path ending in .jsonl is a user task);
- `Task.splits(sizes, seed, tokenizer)`: deterministic disjoint train/val/test examples;
- `encoding.encode_examples(examples, tokenizer, n_ctx)`: right-padded `TaskBatch`;
- `metrics`: task loss, two-way loss, accuracy from the logits at the choice position;
- `evaluate`: score any `logits_fn(tokens) -> logits` on tasks.

Importing this package does not import torch; `encoding`, `metrics` and `evaluate` do.
"""

from sparsecircuits.tasks.base import SplitSizes, Task, TaskExample, TaskSplits
from sparsecircuits.tasks.registry import PAPER_TASKS, all_tasks, get_task, get_tasks

__all__ = [
    "PAPER_TASKS",
    "SplitSizes",
    "Task",
    "TaskExample",
    "TaskSplits",
    "all_tasks",
    "get_task",
    "get_tasks",
]
