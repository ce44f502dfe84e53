"""Fixtures: small models in OpenAI's circuit-sparsity format, written by hand (reference.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_CORPUS
from tests.openai_format import reference as ref

SAMPLE_CHARS = 24_000
"""Text the hand-written BPE learns from: enough for 127 merges, seconds to learn."""


def corpus_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(TEST_CORPUS.rglob("*.py"))]


@pytest.fixture(scope="session")
def small_bpe() -> tuple[str, str, dict[bytes, int]]:
    """(encoder.json, vocab.bpe, ranks) of a 384-token BPE (256 bytes, 127 merges, EOT)."""
    texts, total = [], 0
    for text in corpus_texts():
        texts.append(text[: SAMPLE_CHARS - total])
        total += len(texts[-1])
        if total >= SAMPLE_CHARS:
            break
    return ref.bpe_files(ref.learn_bpe(texts, 127))


@pytest.fixture
def make_model_dir(small_bpe, tmp_path):
    """make_model_dir(name, **config overrides) -> (their model directory, config, state)."""

    def make(name: str = "theirs", seed: int = 0, **overrides):
        cfg = ref.beeg_config(**overrides)
        sd = ref.random_state_dict(cfg, seed=seed)
        encoder, vocab_bpe, _ = small_bpe
        return ref.write_model_dir(tmp_path / name, cfg, sd, encoder, vocab_bpe), cfg, sd

    return make


@pytest.fixture
def data_overrides(data_cache) -> dict[str, object]:
    """Our config keys an imported model needs in tests: the committed corpus as its data."""
    return {"data.sources": [str(TEST_CORPUS)], "data.cache_dir": str(data_cache)}


def out_dir(tmp_path: Path, name: str = "ours") -> Path:
    return tmp_path / name
