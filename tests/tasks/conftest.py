"""Fixtures for the task suite: a real BPE of the test corpus, checked splits, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from sparsecircuits.checkpoint import write_checkpoint
from sparsecircuits.config import ModelConfig, RunConfig
from sparsecircuits.data.corpus import collect_corpus
from sparsecircuits.data.tokenizer import save_tokenizer, train_tokenizer
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks import SplitSizes, TaskSplits, all_tasks
from tests.conftest import TEST_CORPUS

# Small splits for the per-task tests (even, so every split holds whole pairs).
TEST_SIZES = SplitSizes(train=96, val=48, test=48)
ALL_TASK_NAMES = [t.name for t in all_tasks()]


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """The paper's tokenizer shape: byte-level BPE, vocab 2048, trained on the committed test
    corpus (178 stdlib files, test files included, like the real corpus). Every built-in task
    is expressible in it with no example dropped (tests/corpus/README.md)."""
    corpus = collect_corpus([str(TEST_CORPUS)])
    tok = train_tokenizer((f.text for f in corpus.files), vocab_size=2048)
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tokenizer(tokenizer_path) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_path))


@pytest.fixture(scope="session")
def small_tokenizer() -> Tokenizer:
    """A 300-token BPE: too small to express most tasks (their candidates are not tokens)."""
    corpus = collect_corpus([str(TEST_CORPUS)], max_files=20)
    return train_tokenizer((f.text for f in corpus.files), vocab_size=300)


@pytest.fixture(scope="session")
def checked_splits(tokenizer) -> dict[str, TaskSplits]:
    """Every built-in task's splits at TEST_SIZES, checked against the tokenizer (built once)."""
    return {t.name: t.splits(TEST_SIZES, seed=0, tokenizer=tokenizer) for t in all_tasks()}


def make_checkpoint(directory: Path, tok: Tokenizer, n_ctx: int) -> Path:
    """A real checkpoint of an untrained one-layer GPT with `tok` as its tokenizer."""
    cfg = RunConfig(
        model=ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, d_model=32, n_ctx=n_ctx)
    )
    torch.manual_seed(0)
    model = GPT(cfg.model)
    return write_checkpoint(directory, cfg, model.state_dict(), tok.to_str(), {"step": 0})


@pytest.fixture(scope="session")
def checkpoint(tokenizer, tmp_path_factory) -> Path:
    # n_ctx 48 is shorter than many contexts: evaluation must left-truncate them.
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", tokenizer, n_ctx=48)


@pytest.fixture(scope="session")
def small_checkpoint(small_tokenizer, tmp_path_factory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("small-ckpt") / "checkpoint", small_tokenizer, n_ctx=256
    )
