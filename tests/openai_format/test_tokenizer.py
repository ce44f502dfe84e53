"""The imported tokenizer encodes every string as tiktoken does with their BPE files.

The reference (reference.py) is tiktoken's rule written out by hand: tinypython's regex,
then lowest-rank merges. Two BPEs: a small one learned by hand, and a 1024-token one whose
merges come from the `tokenizers` trainer (many whitespace-run tokens, as in Python code).
"""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from sparsecircuits.data.tokenizer import train_tokenizer
from sparsecircuits.openai_format import bpe
from tests.openai_format import reference as ref
from tests.openai_format.conftest import corpus_texts

EDGE_CASES = [
    "",
    " ",
    "      ",
    "x      = 1",
    "def f(a, b):\n    return a  +  b\n\n\n",
    "    \n\n    \t\n",
    "trailing spaces   \n   \n",
    "\r\n\r\n  \r\nx\r",
    "tabs\t\tand\t \tmixed \t",
    "numbers 1 12 123 1234 1234567 3.14159 0x1F 1_000_000",
    "path/to/file //comment ///\n/",
    "s = '''quoted''' + \"x\" + f'{y!r}'  # ))]]}}\n",
    "a<|endoftext|>b",
    "<|endoftext|><|endoftext|>",
    "x = 1\n<|endoftext|>\n\ndef g(): pass",
    "<|endoftext",
    "héllo wörld ñandú façade",
    "日本語のテキスト 中文 한국어",
    "emoji 🐍🎉 and ZWJ 👩‍💻",
    "combining e\u0301 a\u0308 and nbsp\u00a0here",
    "unicode spaces\u2003\u3000\u2028\u2029 end",
    "Ⅻ ½ ² ٣ digits of other kinds",
    "\x00\x01\x7f control bytes \x1b[0m",
    " (letter after space) .x ,y ;z",
    "\n\nclass A:\n\tpass\n",
]


@pytest.fixture(scope="session")
def trained_bpe(tmp_path_factory):
    """(Tokenizer as imported, ranks) for a 1024-token BPE trained on the test corpus and
    written in their file format."""
    ours = train_tokenizer(corpus_texts()[:60], vocab_size=1024)
    files = bpe.export_bpe_files(ours)
    d = tmp_path_factory.mktemp("trained-bpe")
    (d / "encoder.json").write_text(files.encoder_json)
    (d / "vocab.bpe").write_text(files.vocab_bpe)
    read = bpe.read_bpe_files(d / "encoder.json", d / "vocab.bpe")
    return Tokenizer.from_str(bpe.hf_tokenizer_json(read)), read.ranks


@pytest.fixture(scope="session")
def small_tokenizer(small_bpe, tmp_path_factory):
    encoder, vocab_bpe, ranks = small_bpe
    d = tmp_path_factory.mktemp("small-bpe")
    (d / "encoder.json").write_text(encoder)
    (d / "vocab.bpe").write_text(vocab_bpe)
    read = bpe.read_bpe_files(d / "encoder.json", d / "vocab.bpe")
    assert read.ranks == ranks
    return Tokenizer.from_str(bpe.hf_tokenizer_json(read)), ranks


@pytest.mark.parametrize("which", ["small_tokenizer", "trained_bpe"])
def test_edge_cases_encode_as_tiktoken_would(which, request):
    tok, ranks = request.getfixturevalue(which)
    eot = tok.token_to_id(ref.EOT)
    assert eot == len(ranks)  # tinypython_2k's <|endoftext|> is the last id
    for text in EDGE_CASES:
        want = ref.encode(text, ranks, eot)
        got = tok.encode(text).ids
        assert got == want, repr(text)
        assert tok.decode(got, skip_special_tokens=False) == text, repr(text)


def test_test_corpus_files_encode_as_tiktoken_would(trained_bpe):
    tok, ranks = trained_bpe
    eot = tok.token_to_id(ref.EOT)
    texts = corpus_texts()
    joined = ref.EOT.join(texts[100:130])  # files the BPE did not learn from, EOT-separated
    assert tok.encode(joined).ids == ref.encode(joined, ranks, eot)


def test_a_piece_that_is_a_token_stays_whole_and_merges_follow_bytes_not_lines():
    """Tokens 'ab', 'bc', 'abc' where vocab.bpe makes 'abc' from ('ab', 'c'): tiktoken still
    merges ('a', 'bc') into 'abc' (the concatenation is a token), and a piece equal to a token
    is that token even when merges would not reach it."""
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c"), (b"x", b"y"), (b"xy", b"z"),
              (b"q", b"xyz")]
    encoder, vocab_bpe, ranks = ref.bpe_files(merges)
    read = bpe.BPE(ranks=ranks, special={ref.EOT: len(ranks)},
                   merges=tuple((a.decode(), b.decode()) for a, b in merges))
    tok = Tokenizer.from_str(bpe.hf_tokenizer_json(read))
    for text in ["abc", "abcabc", "qxyz", "zqxyzabc"]:
        assert tok.encode(text).ids == ref.encode(text, ranks, len(ranks)), text
    assert tok.encode("abc").ids == [ranks[b"abc"]]


def test_encoder_and_merges_that_disagree_are_refused(small_bpe, tmp_path):
    encoder, vocab_bpe, _ = small_bpe
    doc = json.loads(encoder)
    a, b = list(doc)[300], list(doc)[301]
    doc[a], doc[b] = doc[b], doc[a]
    (tmp_path / "encoder.json").write_text(json.dumps(doc))
    (tmp_path / "vocab.bpe").write_text(vocab_bpe)
    with pytest.raises(bpe.OpenAIFormatError, match="does not match") as err:
        bpe.read_bpe_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert "\n" not in str(err.value)
