"""A BPE edited so every built-in task is expressible (`data.task_tokens`)."""

from __future__ import annotations

import json
import random

import pytest
from tokenizers import Tokenizer

from sparsecircuits.config import DataConfig
from sparsecircuits.data.corpus import collect_corpus
from sparsecircuits.data.prepare import fingerprint, prepare_data
from sparsecircuits.data.task_tokens import (
    TokenRules,
    bpe,
    enforce_rules,
    rules_from_examples,
    task_token_rules,
    train_task_tokenizer,
)
from sparsecircuits.data.tokenizer import train_tokenizer
from sparsecircuits.errors import DataError, TaskError
from sparsecircuits.tasks import SplitSizes, all_tasks
from tests.conftest import TEST_CORPUS

SIZES = SplitSizes(train=64, val=32, test=32)
# The committed stdlib files mixed with generated idioms: a mix whose plain 2048-token BPE
# loses task candidates (` root`, ` source`, ...) and learns ` enum`, like the frontier corpus.
MIXED_SOURCES = (str(TEST_CORPUS), "idioms:3000")


@pytest.fixture(scope="module")
def rules() -> TokenRules:
    return task_token_rules()


@pytest.fixture(scope="module")
def mixed_texts() -> list[str]:
    return [f.text for f in collect_corpus(MIXED_SOURCES).files]


def inexpressible(tok: Tokenizer) -> dict[str, str]:
    failed = {}
    for task in all_tasks():
        try:
            task.splits(SIZES, tokenizer=tok)
        except TaskError as exc:
            failed[task.name] = str(exc)
    return failed


def test_every_task_builds_its_splits_where_a_plain_bpe_loses_some(rules, mixed_texts):
    plain = train_tokenizer(mixed_texts, 2048)
    lost = inexpressible(plain)
    assert {"class_init", "else_elif", "var_swap", "enumerate_range"} <= set(lost)
    assert "' root'" in lost["class_init"]

    edited = train_task_tokenizer(mixed_texts, 2048, rules)
    assert edited.get_vocab_size() == 2048
    assert inexpressible(edited) == {}


def test_the_edit_keeps_most_of_the_trained_merges(rules, mixed_texts):
    plain = json.loads(train_tokenizer(mixed_texts, 2048).to_str())["model"]["merges"]
    edited = json.loads(train_task_tokenizer(mixed_texts, 2048, rules).to_str())["model"]
    shared = {tuple(m) for m in plain} & {tuple(m) for m in edited["merges"]}
    assert len(shared) > 0.97 * len(plain)
    assert len(edited["vocab"]) == 2048


def test_with_nothing_to_change_the_result_is_the_plain_bpe(sample_texts):
    plain = train_tokenizer(sample_texts, 600)
    edited = train_task_tokenizer(sample_texts, 600, TokenRules((), ()))
    assert edited.get_vocab() == plain.get_vocab()
    text = "\n".join(sample_texts)
    assert edited.encode(text).ids == plain.encode(text).ids


def test_required_tokens_are_built_and_forbidden_ones_removed(sample_texts):
    plain = train_tokenizer(sample_texts, 600)
    assert len(plain.encode(" zebraquux").ids) > 1
    assert plain.token_to_id("Ġreturn") is not None
    rules = TokenRules(required=(" zebraquux",), forbidden=(" return",))
    edited = enforce_rules(train_tokenizer(sample_texts, 600, spare=64), rules, 600)
    assert len(edited.encode(" zebraquux").ids) == 1
    assert edited.token_to_id("Ġreturn") is None
    assert edited.get_vocab_size() == 600


def test_a_vocabulary_too_small_for_the_rules_is_an_error(sample_texts, rules):
    with pytest.raises(DataError, match="cannot hold the .* task candidates"):
        train_task_tokenizer(sample_texts[:3], 280, rules)


def test_our_bpe_cuts_words_exactly_as_the_tokenizers_library(sample_texts):
    tok = train_tokenizer(sample_texts, 500)
    model = json.loads(tok.to_str())["model"]
    ranks = {tuple(m): i for i, m in enumerate(model["merges"])}
    vocab = {i: t for t, i in model["vocab"].items()}
    words = {w for text in sample_texts for w, _ in tok.pre_tokenizer.pre_tokenize_str(text)}
    for word in sorted(words)[:3000]:
        want = [vocab[t.id] for t in tok.model.tokenize(word)]
        assert bpe(word, ranks) == want, word


def test_rules_forbid_tokens_that_swallow_a_candidate_with_the_code_after_it():
    rules = rules_from_examples(
        [" en", " range", "]"], [(" en", " enumerate(x):"), ("]", "]])\n"), (" range", " range")]
    )
    assert rules.required == (" en", " range", "]")
    assert rules.forbidden == tuple(
        sorted([" enu", " enum", " enume", " enumer", " enumera", " enumerat", " enumerate"]
               + ["]]", "]])"])
    )  # fmt: skip


def test_the_task_rules_cover_every_task_candidate(rules):
    for task in all_tasks():
        ex = task.generate(random.Random(7))
        assert {ex.correct, ex.wrong} <= set(rules.required), task.name
    assert " root" in rules.required and " enumerate" in rules.forbidden


def test_prepare_data_with_task_tokens_fingerprints_and_records_it(tmp_path, rules):
    corpus = collect_corpus([str(TEST_CORPUS)])
    cfg = DataConfig(sources=(str(TEST_CORPUS),), cache_dir=str(tmp_path), task_tokens=True)
    assert fingerprint(corpus, cfg, 2048, rules) != fingerprint(corpus, cfg, 2048)
    prepared = prepare_data(cfg, 2048)
    assert prepared.stats["task_tokens"] is True
    tok = Tokenizer.from_file(str(prepared.tokenizer_path))
    assert all(len(tok.encode(t, add_special_tokens=False).ids) == 1 for t in rules.required)
