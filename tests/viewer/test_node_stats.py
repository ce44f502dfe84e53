"""Node statistics against their definitions: snippets, histogram, direct logit effect."""

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
    record_nodes,
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


def test_snippets_are_the_extremes_and_do_not_overlap(loaded, corpus):
    location = "0.mlp.post_act"
    every = corpus.location(location)  # [N, T, d_mlp]
    eligible = every[:, CFG.min_context :]  # positions a snippet may be centred on
    # The neurons under test come from the data (the one reaching the highest value, the one
    # reaching the lowest): which index fires in a tiny model depends on its training corpus.
    strongest = int(eligible.amax(dim=(0, 1)).argmax())
    weakest = int(eligible.amin(dim=(0, 1)).argmin())
    strings = token_strings(loaded.tokenizer)

    acts = every[..., strongest]  # [N, T]
    stats = corpus_stats(corpus, strings, location, strongest)
    top = stats["top"]
    assert float(eligible[..., strongest].max()) > 0 and top
    assert top[0]["value"] == pytest.approx(float(eligible[..., strongest].max()), rel=1e-3)
    for s in top:
        assert len(s["tokens"]) <= CFG.before + CFG.after + 1
        assert s["acts"][s["focus"]] == s["value"] > 0
    values = [s["value"] for s in top]
    assert values == sorted(values, reverse=True) and len(values) <= CFG.top_k
    assert stats["mean"] == pytest.approx(float(acts.mean()), abs=1e-4)

    lowest = float(eligible[..., weakest].min())
    bottom = corpus_stats(corpus, strings, location, weakest)["bottom"]
    if lowest < 0:  # GELU's negative lobe is small, and AbsTopK often zeroes all of it
        assert bottom[0]["value"] == pytest.approx(lowest, rel=1e-3)
        values = [s["value"] for s in bottom]
        assert values == sorted(values) and all(v < 0 for v in values)
    else:
        assert bottom == []


def test_histogram_counts_zeros_apart():
    values = torch.tensor([0.0, 0.0, 0.0, -1.0, 1.0, 2.0, 3.0])
    h = histogram(values, bins=4)
    assert h["zeros"] == 3 and h["total"] == 7 and sum(h["counts"]) == 4
    assert h["edges"][0] == -1.0 and h["edges"][-1] == 3.0 and len(h["edges"]) == 5
    empty = histogram(torch.zeros(5), bins=4)
    assert empty["counts"] == [] and empty["zeros"] == 5


NODES = [("0.mlp.post_act", 7), ("1.attn.v", 3), ("0.mlp.post_act", 2), ("1.attn.act_in", 0)]


def test_recording_many_nodes_in_one_pass_equals_recording_each_location(loaded, corpus):
    acts = record_nodes(loaded.model, corpus.tokens, NODES, batch_size=3)  # a partial batch too
    assert set(acts) == set(NODES)
    for location, index in NODES:
        assert torch.allclose(acts[(location, index)], corpus.location(location)[..., index],
                              atol=1e-5)


def test_preloaded_nodes_give_the_same_statistics(loaded, corpus):
    strings = token_strings(loaded.tokenizer)
    fresh = CorpusActivations(loaded.model, corpus.tokens, CFG)
    fresh.preload(NODES)
    assert not fresh._acts  # no whole location was recorded
    for location, index in NODES:
        assert corpus_stats(fresh, strings, location, index) == corpus_stats(
            corpus, strings, location, index)
