"""Byte-level BPE training, saving and loading."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import (
    EOT,
    eot_id,
    load_tokenizer,
    save_tokenizer,
    single_token_id,
    train_tokenizer,
)
from sparsecircuits.errors import DataError

VOCAB = 512


@pytest.fixture(scope="module")
def tok(sample_texts) -> Tokenizer:
    return train_tokenizer(sample_texts, VOCAB)


def random_text(seed: int, n: int = 400) -> str:
    """Python-ish text mixed with arbitrary code points (no surrogates: not valid UTF-8)."""
    rng = random.Random(seed)
    pieces = ["def f(x):\n", "\treturn x\r\n", "    ", "('", '")', "é", "日本", "\x00", "🙂", " "]
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(rng.choice(pieces))
        else:
            cp = rng.randrange(0x110000)
            if not 0xD800 <= cp <= 0xDFFF:
                out.append(chr(cp))
    return "".join(out)


def test_vocab_has_exactly_the_requested_size(tok):
    assert tok.get_vocab_size() == VOCAB


def test_eot_is_a_special_single_token(tok):
    idx = eot_id(tok)
    assert idx == tok.token_to_id(EOT)
    assert tok.encode(EOT).ids == [idx]
    assert tok.decode([idx], skip_special_tokens=False) == EOT


@pytest.mark.parametrize("seed", range(5))
def test_any_text_round_trips(tok, seed):
    text = random_text(seed)
    ids = tok.encode(text).ids
    assert max(ids) < VOCAB
    assert tok.decode(ids) == text


def test_python_source_round_trips_and_compresses(tok, sample_texts):
    text = sample_texts[0]
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8")) / 2


def test_single_token_id(tok):
    vocab = tok.get_vocab()
    merged = max(vocab, key=len)  # the longest learned token is certainly one token
    text = tok.decode([vocab[merged]])
    assert single_token_id(tok, text) == vocab[merged]
    assert single_token_id(tok, "an entire sentence is not one token") is None
    assert single_token_id(tok, "") is None


def test_training_is_deterministic(sample_texts, tok):
    again = train_tokenizer(sample_texts, VOCAB)
    assert again.to_str() == tok.to_str()


def test_too_small_corpus_is_an_error():
    with pytest.raises(DataError, match="too small"):
        train_tokenizer(["x = 1\n"], 1000)


@pytest.mark.parametrize("size", [100, 256, 70000])
def test_vocab_size_out_of_range_is_an_error(size):
    with pytest.raises(DataError, match="vocab_size"):
        train_tokenizer(["x = 1\n"], size)


def test_save_and_load_round_trip(tok, tmp_path):
    path = save_tokenizer(tok, tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(path)
    text = "with open('f') as fh:\n    print(fh.read())\n"
    assert loaded.encode(text).ids == tok.encode(text).ids
    assert eot_id(loaded) == eot_id(tok)
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp files left


def test_load_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")


@pytest.mark.parametrize("content", [b"{not json", b'{"model": 3}', b"\xff\xfe"])
def test_load_corrupt_file_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="tokenizer file") as info:
        load_tokenizer(path)
    assert "\n" not in str(info.value)


def test_eot_id_of_a_tokenizer_without_eot_is_an_error():
    from tokenizers import models

    with pytest.raises(DataError, match="endoftext"):
        eot_id(Tokenizer(models.BPE()))
