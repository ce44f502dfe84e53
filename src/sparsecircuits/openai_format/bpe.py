"""OpenAI's GPT-2-style BPE files (`encoder.json` + `vocab.bpe`) <-> a `tokenizers` JSON.

Their tokenizer (`tinypython_2k`, docs/openai.md) is a tiktoken encoding built from the two
files: token bytes are written with GPT-2's printable byte alphabet, a token's id is its rank,
the 256 single bytes take ranks 0..255 (printable bytes first, then the rest, each group in
byte order), and merge line n of vocab.bpe makes the token of rank 256 + n. tiktoken encodes a
piece of text as one token when the whole piece is a token, and otherwise merges, again and
again, the adjacent pair whose concatenation has the lowest rank (leftmost on ties).

A Hugging Face BPE gives the same tokens when (1) `ignore_merges` is on (a piece that is a
token stays whole), and (2) its merge list holds every pair (a, b) of tokens whose
concatenation is a token, ordered by that token's rank: tiktoken looks at the bytes of the
concatenation, not at which merge produced it. The text is split first by tinypython's regex
(a `Split` pre-tokenizer) and then mapped to the byte alphabet (`ByteLevel` without regex).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from sparsecircuits.openai_format.errors import OpenAIFormatError

EOT = "<|endoftext|>"
TINYPYTHON_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""tinypython_2k's pre-tokenization regex (their `tiktoken_ext/tinypython.py`)."""
SPECIAL_TOKENS = (EOT, "<|startoftext|>")
"""Entries of encoder.json that are not byte tokens (tiktoken drops both)."""


def _byte_alphabet() -> tuple[dict[int, str], list[int]]:
    """GPT-2's byte -> printable character map, and the bytes in rank order (ranks 0..255)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    char_of = {b: chr(b) for b in printable}
    rest = [b for b in range(256) if b not in char_of]
    for n, b in enumerate(rest):
        char_of[b] = chr(256 + n)
    return char_of, printable + rest


BYTE_CHAR, BYTE_RANK_ORDER = _byte_alphabet()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def to_text(token: bytes) -> str:
    """Token bytes as written in encoder.json / vocab.bpe / a ByteLevel vocabulary."""
    return "".join(BYTE_CHAR[b] for b in token)


def to_bytes(text: str, where: str) -> bytes:
    try:
        return bytes(CHAR_BYTE[c] for c in text)
    except KeyError as exc:
        raise OpenAIFormatError(f"{where}: {text!r:.40} has a character outside GPT-2's byte "
                                f"alphabet ({exc.args[0]!r})") from None


@dataclass(frozen=True)
class BPE:
    """A tiktoken-style BPE: token bytes -> rank (= id), plus special tokens -> id."""

    ranks: dict[bytes, int]
    special: dict[str, int]
    merges: tuple[tuple[str, str], ...] = ()
    """vocab.bpe's lines as written: merges[n] makes the token of rank 256 + n."""

    @property
    def vocab_size(self) -> int:
        return max([*self.ranks.values(), *self.special.values()]) + 1


def read_bpe_files(encoder_json: Path, vocab_bpe: Path) -> BPE:
    """Read and cross-check their two files; OpenAIFormatError (one line) on any problem."""
    for f in (encoder_json, vocab_bpe):
        if not f.is_file():
            raise OpenAIFormatError(f"tokenizer file {f} does not exist")
    try:
        encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
        lines = vocab_bpe.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OpenAIFormatError(f"cannot read the tokenizer files: {exc}") from None
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise OpenAIFormatError(f"{encoder_json} must map token strings to integer ids")
    # Line 0 is a version header and the file ends with a newline (tiktoken reads [1:-1]).
    ranks = {bytes([b]): i for i, b in enumerate(BYTE_RANK_ORDER)}
    merges = []
    for n, line in enumerate(lines[1:-1]):
        parts = line.split()
        if len(parts) != 2:
            raise OpenAIFormatError(f"{vocab_bpe} line {n + 2} is not a merge 'A B': {line!r:.40}")
        merged = to_bytes(parts[0], str(vocab_bpe)) + to_bytes(parts[1], str(vocab_bpe))
        if merged in ranks:
            raise OpenAIFormatError(f"{vocab_bpe} line {n + 2} makes token {parts[0] + parts[1]!r}"
                                    " a second time")
        ranks[merged] = 256 + n
        merges.append((parts[0], parts[1]))
    special = {k: v for k, v in encoder.items() if k in SPECIAL_TOKENS}
    listed = {to_bytes(k, str(encoder_json)): v for k, v in encoder.items() if k not in special}
    if listed != ranks:
        wrong = next((t for t in ranks if listed.get(t) != ranks[t]), None)
        what = (f"token {to_text(wrong)!r} has id {listed.get(wrong)} but rank {ranks[wrong]}"
                if wrong is not None else f"{len(listed) - len(ranks)} tokens are not merges")
        raise OpenAIFormatError(f"{encoder_json} does not match {vocab_bpe}: {what}")
    taken = set(ranks.values())
    for name, idx in special.items():
        if idx in taken:
            raise OpenAIFormatError(f"{encoder_json}: special token {name} reuses id {idx}")
    return BPE(ranks=ranks, special=special, merges=tuple(merges))


def with_special(bpe: BPE, vocab_size: int) -> BPE:
    """tinypython_2k's `<|endoftext|>` is id vocab_size - 1 even where encoder.json lacks it."""
    if EOT in bpe.special:
        return bpe
    return BPE(ranks=bpe.ranks, special={**bpe.special, EOT: vocab_size - 1}, merges=bpe.merges)


def hf_tokenizer_json(bpe: BPE) -> str:
    """A `tokenizers` JSON that encodes every string as tiktoken does with these files
    (special tokens allowed; module docstring: how)."""
    by_rank = sorted(bpe.ranks, key=bpe.ranks.__getitem__)
    merges = []
    for n, token in enumerate(by_rank[256:]):  # every split into two tokens, by rank of the
        # whole; vocab.bpe's own line first, so that exporting gives the same file back
        own = list(bpe.merges[n]) if n < len(bpe.merges) else None
        if own is not None:
            merges.append(own)
        for cut in range(1, len(token)):
            pair = [to_text(token[:cut]), to_text(token[cut:])]
            if token[:cut] in bpe.ranks and token[cut:] in bpe.ranks and pair != own:
                merges.append(pair)
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": idx, "content": name, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for name, idx in sorted(bpe.special.items(), key=lambda kv: kv[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": TINYPYTHON_PATTERN},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
            "vocab": {to_text(t): bpe.ranks[t] for t in by_rank},
            "merges": merges,
        },
    }
    text = json.dumps(doc, ensure_ascii=False)
    Tokenizer.from_str(text)  # fail here, not in a later reader, if tokenizers refuses it
    return text


# --- export: our tokenizer -> their files ---------------------------------------------------


@dataclass(frozen=True)
class ExportedVocab:
    """Their files for one of our tokenizers, and where each of our ids goes."""

    encoder_json: str
    vocab_bpe: str
    new_id: list[int]
    """new_id[our id] = the id (tiktoken rank) of the same token in the exported files."""


def export_bpe_files(tokenizer: Tokenizer) -> ExportedVocab:
    """encoder.json + vocab.bpe holding `tokenizer`'s tokens, ids renumbered to tiktoken ranks.

    tiktoken needs the 256 bytes at ranks 0..255 and every other token at 256 + the line of
    the merge that makes it, so ids move (the caller permutes the weights with `new_id`);
    `<|endoftext|>` goes last, where tinypython_2k has it. Tokens are ordered by our merge
    order. Our pre-tokenizer (GPT-2's regex) is not written: their code splits text with
    tinypython's regex, so it encodes some strings differently (docs/openai.md).
    """
    doc = json.loads(tokenizer.to_str())
    model = doc.get("model", {})
    if model.get("type") != "BPE":
        raise OpenAIFormatError("only a byte-level BPE tokenizer can be exported")
    vocab: dict[str, int] = model["vocab"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    specials = {t["content"]: t["id"] for t in doc.get("added_tokens", [])}
    size = tokenizer.get_vocab_size()
    order: list[str] = [to_text(bytes([b])) for b in BYTE_RANK_ORDER]
    seen = set(order)
    lines = []
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            order.append(a + b)
            lines.append(f"{a} {b}")
    missing = [t for t in vocab if t not in seen and t not in specials]
    if missing:
        raise OpenAIFormatError(f"token {missing[0]!r:.40} is neither a byte nor made by a merge")
    if set(specials) - {EOT}:
        raise OpenAIFormatError(f"only {EOT} can be exported as a special token, got "
                                f"{sorted(set(specials) - {EOT})}")
    encoder = {tok: i for i, tok in enumerate(order)}
    if EOT in specials:
        encoder[EOT] = len(order)
    if len(encoder) != size:
        raise OpenAIFormatError(f"the tokenizer has {size} ids but {len(encoder)} tokens")
    ids = {**vocab, **specials}
    new_id = [0] * size
    for tok, ours in ids.items():
        new_id[ours] = encoder[tok]
    vocab_bpe = "#version: 0.2\n" + "".join(line + "\n" for line in lines)
    # ASCII with \u escapes, as GPT-2's encoder.json is written
    return ExportedVocab(json.dumps(encoder), vocab_bpe, new_id)
