"""A task's examples for pruning: its train/val/test splits encoded for one tokenizer, and
the nonsense-task control built from them (docs/method.md)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from tokenizers import Tokenizer

from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import SplitSizes, Task
from sparsecircuits.tasks.encoding import TaskBatch, encode_examples
from sparsecircuits.tasks.registry import get_task


@dataclass(frozen=True)
class TaskData:
    """A task's splits, encoded for one tokenizer."""

    name: str
    description: str
    train: TaskBatch
    val: TaskBatch
    test: TaskBatch
    task_tokens: tuple[int, ...]
    """Every token id occurring in the examples' contexts (for embed edges)."""
    candidate_tokens: tuple[int, ...]
    """Every candidate id (correct or wrong) of the examples (for unembed edges)."""

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    @property
    def seq(self) -> int:
        """The longest example, in tokens."""
        return max(int(b.lengths.max()) for b in (self.train, self.val, self.test))


def _tokens_of(batches: list[TaskBatch]) -> tuple[int, ...]:
    ids: set[int] = set()
    for b in batches:
        keep = torch.arange(b.tokens.shape[1]) < b.lengths[:, None]  # [N, T]: not padding
        ids.update(b.tokens[keep].unique().tolist())
    return tuple(sorted(ids))


def load_task_data(
    task: Task | str, tokenizer: Tokenizer, cfg: PruneConfig, n_ctx: int
) -> TaskData:
    """The task's train/val/test splits, checked against `tokenizer` and encoded (TaskError)."""
    task = get_task(task) if isinstance(task, str) else task
    sizes = SplitSizes(cfg.train_size, cfg.val_size, cfg.test_size)
    splits = task.splits(sizes, seed=cfg.task_seed, tokenizer=tokenizer)
    for split in ("train", "val", "test"):
        if not splits.get(split):
            raise TaskError(f"task {task.name} has no {split} examples")
    batches = [encode_examples(splits.get(s), tokenizer, n_ctx) for s in ("train", "val", "test")]
    candidates = sorted({int(i) for b in batches for i in torch.cat([b.correct_id, b.wrong_id])})
    return TaskData(task.name, task.description, *batches, _tokens_of(batches), tuple(candidates))


def nonsense_task(data: TaskData, tokenizer: Tokenizer, seed: int = 0) -> tuple[TaskData, int]:
    """The control task: the same contexts, but 'correct' is always one fixed unrelated token.

    The token is drawn (seeded) among alphabetic tokens of 4+ characters that occur nowhere in
    the task; 'wrong' is the real correct token.
    """
    used = set(data.task_tokens) | set(data.candidate_tokens)
    vocab = tokenizer.get_vocab()
    pool = sorted(
        i for i in vocab.values()
        if i not in used and len(tokenizer.decode([i]).strip()) >= 4
        and tokenizer.decode([i]).strip().isalpha()
    )  # fmt: skip
    if not pool:
        pool = sorted(i for i in vocab.values() if i not in used)
    token = random.Random(seed).choice(pool)

    def swap(b: TaskBatch) -> TaskBatch:
        return replace(b, correct_id=torch.full_like(b.correct_id, token), wrong_id=b.correct_id)

    name = f"{data.name}:nonsense"
    desc = f"contexts of {data.name}, always predict {tokenizer.decode([token])!r}"
    out = TaskData(
        name,
        desc,
        swap(data.train),
        swap(data.val),
        swap(data.test),
        data.task_tokens,
        tuple(sorted(set(data.candidate_tokens) | {token})),
    )
    return out, token
