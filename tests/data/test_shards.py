"""uint16 token shards and the batches drawn from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecircuits.data.shards import (
    TokenShard,
    batch_starts,
    get_batch,
    iter_eval_batches,
    write_shard,
)
from sparsecircuits.errors import DataError


@pytest.fixture
def ramp(tmp_path) -> TokenShard:
    """A shard whose token at position i is i: every window is a run of consecutive ids."""
    path = tmp_path / "ramp.bin"
    write_shard(np.arange(5000), path)
    return TokenShard(path)


def test_round_trip_of_an_array_and_of_streamed_chunks(tmp_path):
    ids = np.array([0, 1, 2047, 65535, 7], dtype=np.int64)
    assert write_shard(ids, tmp_path / "a.bin") == 5
    assert write_shard(iter([[0, 1], np.array([2047]), [], [65535, 7]]), tmp_path / "b.bin") == 5
    for name in ("a.bin", "b.bin"):
        shard = TokenShard(tmp_path / name)
        assert len(shard) == 5
        assert shard.tokens.dtype == np.dtype("<u2")
        assert shard.tokens.tolist() == ids.tolist()
    # Flat little-endian uint16, no header.
    assert (tmp_path / "a.bin").read_bytes()[:4] == b"\x00\x00\x01\x00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_memory_map_is_read_only(ramp):
    with pytest.raises(ValueError):
        ramp.tokens[0] = 1


def test_empty_shard_has_length_zero(tmp_path):
    assert write_shard([], tmp_path / "e.bin") == 0
    assert len(TokenShard(tmp_path / "e.bin")) == 0


@pytest.mark.parametrize("bad", [[-1], [65536], [0.5]])
def test_ids_that_do_not_fit_uint16_are_rejected_and_leave_no_file(tmp_path, bad):
    with pytest.raises(DataError):
        write_shard(np.array(bad), tmp_path / "bad.bin")
    assert list(tmp_path.iterdir()) == []


def test_missing_or_odd_sized_shard_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        TokenShard(tmp_path / "none.bin")
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match="odd size"):
        TokenShard(tmp_path / "odd.bin")


def test_batch_shape_dtype_and_contiguous_windows(ramp):
    batch = get_batch(ramp, batch_size=6, seq_len=32, seed=0, step=0)
    assert batch.shape == (6, 33) and batch.dtype == torch.long
    steps = batch[:, 1:] - batch[:, :-1]
    assert torch.all(steps == 1)
    assert batch.min() >= 0 and batch.max() < 5000


def test_batches_depend_only_on_seed_and_step(ramp):
    a = get_batch(ramp, 8, 16, seed=3, step=10)
    assert torch.equal(a, get_batch(ramp, 8, 16, seed=3, step=10))
    assert not torch.equal(a, get_batch(ramp, 8, 16, seed=3, step=11))
    assert not torch.equal(a, get_batch(ramp, 8, 16, seed=4, step=10))
    starts = batch_starts(len(ramp), 17, 8, seed=3, step=10)
    assert a[:, 0].tolist() == starts.tolist()


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_concatenate_to_the_single_process_batch(ramp, world_size):
    full = get_batch(ramp, 8, 16, seed=1, step=5)
    parts = [
        get_batch(ramp, 8, 16, seed=1, step=5, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    assert all(p.shape == (8 // world_size, 17) for p in parts)
    assert torch.equal(torch.cat(parts), full)


def test_batch_errors(ramp, tmp_path):
    with pytest.raises(DataError, match="divisible"):
        get_batch(ramp, 6, 16, seed=0, step=0, rank=0, world_size=4)
    with pytest.raises(DataError, match="rank"):
        get_batch(ramp, 8, 16, seed=0, step=0, rank=2, world_size=2)
    write_shard(np.arange(10), tmp_path / "short.bin")
    with pytest.raises(DataError, match="fewer than seq_len"):
        get_batch(TokenShard(tmp_path / "short.bin"), 2, 10, seed=0, step=0)


def test_a_window_exactly_as_long_as_the_shard_works(tmp_path):
    write_shard(np.arange(11), tmp_path / "exact.bin")
    batch = get_batch(TokenShard(tmp_path / "exact.bin"), 2, 10, seed=0, step=0)
    assert batch.tolist() == [list(range(11))] * 2


def test_eval_batches_are_fixed_and_spread_over_the_shard(ramp):
    batches = list(iter_eval_batches(ramp, batch_size=4, seq_len=9, n_batches=3))
    again = list(iter_eval_batches(ramp, batch_size=4, seq_len=9, n_batches=3))
    assert len(batches) == 3 and all(b.shape == (4, 10) for b in batches)
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    starts = torch.cat(batches)[:, 0]
    assert starts[0] == 0 and starts[-1] == len(ramp) - 10  # first and last window
    assert torch.all(starts[1:] > starts[:-1])
    halves = [list(iter_eval_batches(ramp, 4, 9, 3, rank=r, world_size=2)) for r in range(2)]
    assert torch.equal(torch.cat([halves[0][1], halves[1][1]]), batches[1])
