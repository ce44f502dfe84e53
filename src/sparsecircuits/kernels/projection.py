"""The top-k weight projection in one C++ pass per matrix (docs/sparse-kernels.md).

Keeps the same entries as `sparsecircuits.train.sparsity.sparsity_mask` (the torch
reference): the top-j of every node row/column, then the largest remaining entries up to k,
ties at the threshold in index order. Only ties inside a row's or column's top-j may be
broken differently (here: lowest index first; torch.topk does not specify).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparsecircuits.kernels import library
from sparsecircuits.kernels.library import f32, u8


def applies(weight: Tensor) -> bool:
    """Whether `project_weight_` can run on this tensor (else use the torch reference)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32
            and weight.is_contiguous() and weight.ndim in (1, 2) and library.available())


@torch.no_grad()
def project_weight_(weight: Tensor, k: int, node_axes: tuple[int, ...], j: int) -> int:
    """Zero all but the kept entries of `weight` in place; returns the number kept."""
    rows, cols = weight.shape if weight.ndim == 2 else (1, weight.numel())
    row_j = j if weight.ndim == 2 and 0 in node_axes else 0
    col_j = j if weight.ndim == 2 and 1 in node_axes else 0
    n = rows * cols
    bits = torch.empty(n, dtype=torch.int32)
    keep = torch.empty(n, dtype=torch.uint8)
    work = torch.empty(n + 2 * cols * min(col_j, rows) + cols + 2 * row_j, dtype=torch.int32)
    lib = library.load()
    kept = lib.sc_project(f32(weight), rows, cols, k, row_j, col_j, library.u32(bits),
                          u8(keep), library.u32(work))
    # Written through a raw pointer: tell autograd (and SparseLinear's cached index) that the
    # tensor changed, as an in-place torch op would.
    torch.autograd.graph.increment_version(weight)
    return int(kept)
