"""BPE tokens back to text with character offsets, so Python's tokenizer can label them.

Our tokenizer is byte-level BPE: each token is a run of bytes, and a multi-byte UTF-8 character
may be split across two tokens. A file's text is therefore decoded from the concatenated bytes
(invalid bytes kept as surrogates, one character per byte), and each token is mapped to the
character holding its first byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from tokenizers import Tokenizer


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the character a byte is shown as -> the byte."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))  # fmt: skip
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


@lru_cache(maxsize=4)
def _token_bytes(tokenizer_json: str) -> tuple[bytes | None, ...]:
    tok = Tokenizer.from_str(tokenizer_json)
    special = set(tok.get_added_tokens_decoder())
    table = _byte_of_char()
    out: list[bytes | None] = []
    for i in range(tok.get_vocab_size()):
        piece = tok.id_to_token(i)
        if i in special or piece is None or any(c not in table for c in piece):
            out.append(None)
        else:
            out.append(bytes(table[c] for c in piece))
    return tuple(out)


def token_bytes(tokenizer: Tokenizer) -> tuple[bytes | None, ...]:
    """The bytes of every token id; None for special tokens (`<|endoftext|>`)."""
    return _token_bytes(tokenizer.to_str())


@dataclass(frozen=True)
class DecodedText:
    """A run of tokens as text: `text[starts[i]:starts[i + 1]]` is (about) token i."""

    text: str
    starts: np.ndarray  # [n_tokens] character offset of each token's first byte
    ends: np.ndarray  # [n_tokens] character offset just past its last byte


def decode(ids: Sequence[int], table: Sequence[bytes | None]) -> DecodedText:
    """Decode token ids (no special tokens among them) with per-token character offsets."""
    pieces = [table[i] or b"" for i in ids]
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    byte_ends = np.cumsum(lengths)
    byte_starts = byte_ends - lengths
    raw = b"".join(pieces)
    text = raw.decode("utf-8", errors="surrogateescape")
    if len(text) == len(raw):  # all ASCII (or one char per byte): offsets are byte offsets
        return DecodedText(text, byte_starts, byte_ends)
    char_of_byte = np.empty(len(raw) + 1, dtype=np.int64)
    b = 0
    for c, ch in enumerate(text):
        n = 1 if "\udc80" <= ch <= "\udcff" else len(ch.encode("utf-8"))
        char_of_byte[b : b + n] = c
        b += n
    char_of_byte[len(raw)] = len(text)
    starts = char_of_byte[byte_starts]
    ends = np.maximum(char_of_byte[byte_ends], starts)
    return DecodedText(text, starts, ends)
