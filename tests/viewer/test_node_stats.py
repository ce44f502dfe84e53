"""Node statistics against their definitions: snippets, histogram, means, direct logit effect."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.model.hooks import Recorder
from sparsecircuits.viewer.node_stats import (
    CorpusActivations,
    StatsConfig,
    corpus_stats,
    histogram,
    token_strings,
    val_tokens,
)

CFG = StatsConfig(windows=8, top_k=5, before=6, after=2, bins=10)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def corpus(loaded):
    return CorpusActivations(loaded.model, val_tokens(loaded, CFG.windows), CFG)


def test_windows_come_from_the_val_shard(loaded, corpus):
    assert corpus.tokens.shape == (8, loaded.config.model.n_ctx)
    assert int(corpus.tokens.max()) < loaded.config.model.vocab_size


def test_location_activations_equal_a_recorded_forward(loaded, corpus):
    rec = Recorder(["1.attn.v"])
    with torch.no_grad():
        loaded.model(corpus.tokens, rec.hooks)
    assert torch.allclose(corpus.location("1.attn.v"), rec.acts["1.attn.v"], atol=1e-5)


def test_means_are_the_average_over_every_position(loaded, corpus):
    means = corpus.means()
    assert set(means) == set(loaded.model.locations)
    expected = corpus.location("0.mlp.post_act").mean(dim=(0, 1))
    assert torch.allclose(means["0.mlp.post_act"], expected, atol=1e-5)


def test_snippets_are_the_extremes_and_do_not_overlap(loaded, corpus):
    acts = corpus.location("0.mlp.post_act")[..., 7]  # [N, T]
    stats = corpus_stats(corpus, token_strings(loaded.tokenizer), "0.mlp.post_act", 7)
    eligible = acts[:, CFG.min_context :]
    top = stats["top"]
    assert top[0]["value"] == pytest.approx(float(eligible.max()), rel=1e-3)
    if stats["bottom"]:
        assert stats["bottom"][0]["value"] == pytest.approx(float(eligible.min()), rel=1e-3)
    for s in top:
        assert len(s["tokens"]) <= CFG.before + CFG.after + 1
        assert s["acts"][s["focus"]] == s["value"]
    values = [s["value"] for s in top]
    assert values == sorted(values, reverse=True) and len(values) <= CFG.top_k
    assert stats["mean"] == pytest.approx(float(acts.mean()), abs=1e-4)


def test_histogram_counts_zeros_apart():
    values = torch.tensor([0.0, 0.0, 0.0, -1.0, 1.0, 2.0, 3.0])
    h = histogram(values, bins=4)
    assert h["zeros"] == 3 and h["total"] == 7 and sum(h["counts"]) == 4
    assert h["edges"][0] == -1.0 and h["edges"][-1] == 3.0 and len(h["edges"]) == 5
    empty = histogram(torch.zeros(5), bins=4)
    assert empty["counts"] == [] and empty["zeros"] == 5
