"""Sparse storage of weights in safetensors: a mostly-zero tensor as indices + values.

A model whose matrices keep 1/64 of their entries stores 64x too many zeros densely; the zoo's
20 MiB limit (`sparsecircuits.zoo`) is met by storing such a tensor `W` as three tensors
(docs/architecture.md, "File formats"; docs/sparse-kernels.md):

    W.__indices  int32 [nnz]   flat row-major positions in W, strictly increasing
    W.__values   float [nnz]   W's entries at those positions (W's stored dtype)
    W.__shape    int64 [ndim]  W's shape

Every other entry of W is +0.0. The stored entries are those `!= 0` (NaN included), so dense
-> sparse -> dense is bit-exact except that -0.0 reads back as +0.0: the projection's
`w.mul_(mask)` leaves a -0.0 wherever it zeroed a negative weight, and keeping those would
store half the zeros. A file may mix both forms; one without any `__` name is an ordinary
dense file, so every earlier checkpoint reads unchanged.
`encode` writes the form (`auto`: per tensor, whichever is smaller); `decode` reads both and
turns a damaged index into a one-line CheckpointError before allocating anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from sparsecircuits.errors import CheckpointError

Storage = Literal["auto", "dense", "sparse"]
STORAGE_CHOICES: tuple[str, ...] = ("auto", "dense", "sparse")

INDICES, VALUES, SHAPE = "__indices", "__values", "__shape"
PARTS = (INDICES, VALUES, SHAPE)
INDEX_DTYPE = torch.int32
MAX_NUMEL = 2**31 - 1
"""Largest tensor an int32 flat index can address."""
_HEADER_BYTES_PER_TENSOR = 80
"""Rough safetensors header cost of one tensor entry (JSON: dtype, shape, offsets) beyond its
name: used only to decide which form is smaller."""


def _stored_mask(t: torch.Tensor) -> torch.Tensor:
    """The entries stored: nonzero (NaN too, so a poisoned weight still fails its check)."""
    return t != 0


def sparse_eligible(t: torch.Tensor) -> bool:
    """Floating point, at least one axis, and small enough for int32 flat indices."""
    return t.is_floating_point() and t.ndim >= 1 and 0 < t.numel() <= MAX_NUMEL


def dense_bytes(name: str, t: torch.Tensor) -> int:
    """Bytes `t` takes in a safetensors file stored densely (data + header estimate)."""
    return t.numel() * t.element_size() + len(name) + _HEADER_BYTES_PER_TENSOR


def sparse_bytes(name: str, t: torch.Tensor) -> int:
    """Bytes `t` takes stored as indices + values + shape (data + header estimates)."""
    nnz = int(_stored_mask(t).sum())
    data = nnz * (4 + t.element_size()) + 8 * t.ndim
    return data + 3 * (len(name) + 10 + _HEADER_BYTES_PER_TENSOR)


def to_sparse(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indices, values, shape) of `t` in the stored form (module docstring)."""
    flat = t.detach().cpu().contiguous().flatten()
    indices = _stored_mask(flat).nonzero().squeeze(1)  # ascending
    return (indices.to(INDEX_DTYPE), flat[indices].clone(),
            torch.tensor(tuple(t.shape), dtype=torch.int64))  # fmt: skip


def encode(state: dict[str, torch.Tensor], storage: Storage = "auto") -> dict[str, torch.Tensor]:
    """`state` ready to save: eligible tensors stored sparse where `storage` says so.

    dense: unchanged. sparse: every floating tensor with an axis. auto: each tensor in the
    form that takes fewer bytes (dense on a tie). Dtypes are kept (cast before encoding).
    """
    if storage not in STORAGE_CHOICES:
        raise ValueError(f"storage must be one of {STORAGE_CHOICES}, got {storage!r}")
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if "__" in name:
            raise ValueError(f"tensor name {name!r} contains '__', reserved for sparse storage")
        sparse = (
            storage != "dense"
            and sparse_eligible(t)
            and (storage == "sparse" or sparse_bytes(name, t) < dense_bytes(name, t))
        )
        if not sparse:
            out[name] = t
            continue
        indices, values, shape = to_sparse(t)
        out[name + "." + INDICES] = indices
        out[name + "." + VALUES] = values
        out[name + "." + SHAPE] = shape
    return out


def sparse_names(names: Iterable[str]) -> list[str]:
    """Names of the tensors stored sparse, given a file's tensor names (any of their parts)."""
    return sorted({k.rsplit(".", 1)[0] for k in names if k.rsplit(".", 1)[-1] in PARTS})


def decode(
    tensors: dict[str, torch.Tensor],
    where: Path | str,
    expected_shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, torch.Tensor]:
    """The dense tensors of a file that may hold some sparse; CheckpointError (one line) for
    a missing part, a wrong dtype or shape, or an index out of range, repeated or unsorted.

    With `expected_shapes`, a sparse tensor's recorded shape is checked against it before the
    dense tensor is allocated (a corrupt shape cannot ask for terabytes).
    """
    out = {k: v for k, v in tensors.items() if k.rsplit(".", 1)[-1] not in PARTS}
    for name in sparse_names(tensors):
        if name in out:
            raise CheckpointError(f"{where}: tensor {name} is stored both dense and sparse")
        parts = {}
        for part in PARTS:
            if name + "." + part not in tensors:
                raise CheckpointError(f"{where}: sparse tensor {name} has no {name}.{part}")
            parts[part] = tensors[name + "." + part]
        expected = None if expected_shapes is None else expected_shapes.get(name)
        out[name] = _densify(name, parts[INDICES], parts[VALUES], parts[SHAPE], where, expected)
    return out


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _densify(name: str, indices: torch.Tensor, values: torch.Tensor, shape_t: torch.Tensor,
             where: Path | str, expected: tuple[int, ...] | None) -> torch.Tensor:  # fmt: skip
    """One sparse tensor's dense form, after checking each part (see `decode`)."""
    bad = f"{where}: sparse tensor {name}"
    if shape_t.dtype != torch.int64 or shape_t.ndim != 1:
        raise CheckpointError(f"{bad}: {name}.{SHAPE} must be a 1-D int64 tensor, got "
                              f"{_dtype(shape_t)} of shape {tuple(shape_t.shape)}")  # fmt: skip
    shape = tuple(int(s) for s in shape_t.tolist())
    if any(s < 0 for s in shape) or math.prod(shape) > MAX_NUMEL:
        raise CheckpointError(f"{bad}: {name}.{SHAPE} is not a valid shape: {shape}")
    if expected is not None and shape != tuple(expected):
        raise CheckpointError(f"{bad} has shape {shape}, expected {tuple(expected)}")
    if indices.dtype != INDEX_DTYPE or indices.ndim != 1:
        raise CheckpointError(f"{bad}: {name}.{INDICES} must be a 1-D int32 tensor, got "
                              f"{_dtype(indices)} of shape {tuple(indices.shape)}")  # fmt: skip
    if not values.is_floating_point() or values.ndim != 1:
        raise CheckpointError(f"{bad}: {name}.{VALUES} must be a 1-D floating point tensor, "
                              f"got {_dtype(values)} of shape {tuple(values.shape)}")  # fmt: skip
    if len(indices) != len(values):
        raise CheckpointError(f"{bad}: {len(indices)} indices but {len(values)} values")
    numel = math.prod(shape)
    if len(indices):
        idx = indices.long()
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= numel:
            wrong = low if low < 0 else high
            raise CheckpointError(f"{bad}: index {wrong} is out of range for shape {shape} "
                                  f"({numel} entries)")  # fmt: skip
        steps = idx[1:] - idx[:-1]
        if bool((steps <= 0).any()):
            repeated = idx.sort().values
            dup = (repeated[1:] == repeated[:-1]).nonzero()
            if len(dup):
                raise CheckpointError(f"{bad}: index {int(repeated[dup[0, 0]])} appears twice")
            raise CheckpointError(f"{bad}: indices are not in increasing order")
    dense = torch.zeros(numel, dtype=values.dtype)
    if len(indices):
        dense[idx] = values
    return dense.view(shape)
