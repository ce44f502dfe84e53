"""Byte-level BPE tokenizer trained on the Python corpus (Hugging Face `tokenizers`).

Byte-level means the base alphabet is all 256 bytes, so any text encodes and decodes back
exactly. Pre-tokenization uses the GPT-2 regex, which keeps runs of punctuation together: that
is what lets pairs like `("` and `')` become single tokens, which the string-closing task needs.
`<|endoftext|>` is a special token; the data pipeline puts it after every file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from sparsecircuits.errors import DataError
from sparsecircuits.fileformat import atomic_write_text

EOT = "<|endoftext|>"

# 256 byte symbols + the EOT special token; a smaller vocabulary cannot encode every text.
MIN_VOCAB_SIZE = 257
# Token shards are uint16.
MAX_VOCAB_SIZE = 65535


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048, spare: int = 0) -> Tokenizer:
    """Train a byte-level BPE with exactly `vocab_size` tokens (EOT included) on `texts`.

    Raises DataError if the size is out of range or the texts are too small to learn that many
    merges (the tokenizer would otherwise silently come out smaller than the model's vocab).
    With `spare`, up to that many further merges are learned beyond `vocab_size`, for a caller
    that edits the merge list and cuts it back to size (`task_tokens.py`).
    """
    if not MIN_VOCAB_SIZE <= vocab_size <= MAX_VOCAB_SIZE:
        raise DataError(
            f"vocab_size must be in [{MIN_VOCAB_SIZE}, {MAX_VOCAB_SIZE}], got {vocab_size}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + spare,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    got = tok.get_vocab_size()
    if got < vocab_size:
        raise DataError(
            f"the training text is too small for a {vocab_size}-token vocabulary "
            f"(BPE stopped at {got} tokens); add files or lower the vocab size"
        )
    return tok


def save_tokenizer(tok: Tokenizer, path: str | Path) -> Path:
    """Write `tok` as a tokenizer.json, atomically (a reader never sees half a file)."""
    return atomic_write_text(path, tok.to_str())


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer.json; DataError with one line if it is missing or not a tokenizer."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        return Tokenizer.from_str(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"tokenizer file {path} cannot be read: {exc}") from None
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"tokenizer file {path} is corrupt: {first}") from None


def eot_id(tok: Tokenizer) -> int:
    """The id of `<|endoftext|>`; DataError if the tokenizer lacks it."""
    idx = tok.token_to_id(EOT)
    if idx is None:
        raise DataError(f"tokenizer has no {EOT} token")
    return idx


def single_token_id(tok: Tokenizer, text: str) -> int | None:
    """The id of `text` if it encodes to exactly one token, else None."""
    ids = tok.encode(text, add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None
