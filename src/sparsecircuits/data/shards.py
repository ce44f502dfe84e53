"""Token shards: flat little-endian uint16 files, memory-mapped, and batches drawn from them.

A shard is the concatenation of every file's tokens with `<|endoftext|>` after each file; there
is no header, so `n_tokens = file_size / 2`. Training batches are random windows whose starts
depend only on (seed, step): a resumed run, or the same run on more processes, sees exactly the
same global batches, and rank r of world_size takes the r-th contiguous slice of each.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from sparsecircuits.errors import DataError
from sparsecircuits.fileformat import atomic_write

DTYPE = np.dtype("<u2")
_MAX_TOKEN = int(np.iinfo(np.uint16).max)


def _as_uint16(chunk: object) -> np.ndarray:
    arr = np.asarray(chunk)
    if arr.size == 0:
        return np.empty(0, dtype=DTYPE)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"token ids must be integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() > _MAX_TOKEN:
        raise DataError(f"token ids must be in [0, {_MAX_TOKEN}] to fit a uint16 shard")
    return arr.reshape(-1).astype(DTYPE, copy=False)


def write_shard(tokens: Iterable[object] | np.ndarray, path: str | Path) -> int:
    """Write token ids to `path` as flat uint16; return the number of tokens written.

    `tokens` is one integer array, or an iterable of arrays / lists / ints (streamed, so a
    corpus never has to sit in memory as one array). The file appears atomically.
    """
    chunks: Iterable[object] = [tokens] if isinstance(tokens, np.ndarray) else tokens
    n = 0

    def write(tmp: Path) -> None:
        nonlocal n
        with open(tmp, "wb") as f:
            for chunk in chunks:
                arr = _as_uint16(chunk)
                f.write(arr.tobytes())
                n += arr.size

    atomic_write(path, write)
    return n


class TokenShard:
    """A read-only memory-mapped token shard: `len(shard)` tokens in `shard.tokens`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"token shard {self.path} does not exist")
        size = self.path.stat().st_size
        if size % DTYPE.itemsize:
            raise DataError(f"token shard {self.path} has an odd size ({size} bytes): not uint16")
        if size == 0:  # np.memmap refuses empty files
            self.tokens: np.ndarray = np.empty(0, dtype=DTYPE)
        else:
            self.tokens = np.memmap(self.path, dtype=DTYPE, mode="r")  # [n_tokens]

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        return f"TokenShard({str(self.path)!r}, n_tokens={len(self)})"

    def windows(self, starts: np.ndarray, window: int) -> torch.Tensor:
        """Token windows [len(starts), window] as int64, copied out of the memory map."""
        idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(window, dtype=np.int64)
        return torch.from_numpy(self.tokens[idx].astype(np.int64))  # [n, window]


def batch_starts(n_tokens: int, window: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Start offsets [batch_size] of the random windows of global batch `step`.

    Drawn from np.random.default_rng([seed, step]) so any step's batch can be recomputed
    without replaying earlier ones (resume, more processes).
    """
    if window <= 0 or batch_size <= 0:
        raise DataError(f"window and batch_size must be positive, got {window} and {batch_size}")
    if seed < 0 or step < 0:
        raise DataError(f"seed and step must be >= 0, got {seed} and {step}")
    if n_tokens < window:
        raise DataError(f"token shard has {n_tokens} tokens, fewer than one window of {window}")
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - window + 1, size=batch_size, dtype=np.int64)


def _rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    if world_size <= 0 or not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not in a world of size {world_size}")
    if batch_size % world_size:
        raise DataError(f"batch_size ({batch_size}) must be divisible by world_size ({world_size})")
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)


def get_batch(
    shard: TokenShard,
    batch_size: int,
    seq_len: int,
    seed: int,
    step: int,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """This rank's part of global batch `step`: LongTensor [batch_size // world_size, seq_len + 1].

    Inputs are `batch[:, :-1]`, next-token targets `batch[:, 1:]`.
    """
    part = _rank_slice(batch_size, rank, world_size)
    window = seq_len + 1
    if seq_len <= 0:
        raise DataError(f"seq_len must be positive, got {seq_len}")
    if len(shard) < window:
        raise DataError(
            f"token shard {shard.path} has {len(shard)} tokens, fewer than seq_len + 1 = {window}"
        )
    starts = batch_starts(len(shard), window, batch_size, seed, step)  # [batch_size]
    return shard.windows(starts[part], window)  # [batch_size // world_size, seq_len + 1]


def eval_starts(n_tokens: int, window: int, n_windows: int) -> np.ndarray:
    """Fixed window starts [n_windows] spread evenly from the start to the end of the shard."""
    if n_tokens < window:
        raise DataError(f"token shard has {n_tokens} tokens, fewer than one window of {window}")
    return np.linspace(0, n_tokens - window, n_windows).round().astype(np.int64)


def iter_eval_batches(
    shard: TokenShard,
    batch_size: int,
    seq_len: int,
    n_batches: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """`n_batches` fixed batches [batch_size // world_size, seq_len + 1] for validation loss.

    Always the same windows (no randomness), spread over the whole shard, so val loss is
    comparable between steps and runs. With world_size > 1 each rank gets its slice of each.
    """
    part = _rank_slice(batch_size, rank, world_size)
    if seq_len <= 0 or n_batches <= 0:
        raise DataError(f"seq_len and n_batches must be positive, got {seq_len} and {n_batches}")
    window = seq_len + 1
    if len(shard) < window:
        raise DataError(
            f"token shard {shard.path} has {len(shard)} tokens, fewer than seq_len + 1 = {window}"
        )
    starts = eval_starts(len(shard), window, batch_size * n_batches).reshape(n_batches, batch_size)
    for row in starts:
        yield shard.windows(row[part], window)
