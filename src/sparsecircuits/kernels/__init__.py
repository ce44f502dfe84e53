"""Sparse execution on CPU: weight-sparse linear layers and AbsTopK in C++ (docs/sparse-kernels.md).

`model.kernels` selects, per matrix: 'dense' (torch, dense-masked), 'sparse' (these kernels
wherever they apply) or 'auto' (the kernels below a measured density crossover). CUDA and
other dtypes always take the torch path.
"""

from sparsecircuits.kernels.library import available
from sparsecircuits.kernels.linear import (
    KERNEL_MODES,
    WEIGHT_GRAD_MODES,
    SparseIndex,
    SparseLinear,
    build_index,
)
from sparsecircuits.kernels.topk import abstopk, abstopk_reference

__all__ = [
    "KERNEL_MODES",
    "WEIGHT_GRAD_MODES",
    "SparseIndex",
    "SparseLinear",
    "abstopk",
    "abstopk_reference",
    "available",
    "build_index",
]
