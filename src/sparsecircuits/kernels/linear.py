"""A linear layer whose weight is mostly zeros, computed on its nonzeros (docs/sparse-kernels.md).

    y = x @ W^T + b          x: [..., in], W: [out, in] (dense storage, zeros off the support)

The weight stays an ordinary dense `nn.Parameter` (the optimiser, the top-k projection and
checkpoints see nothing new); each forward reads its nonzeros into a CSR + CSC index, rebuilt
only when the weight's version counter changes (after an optimiser step, a projection or a
load), and runs the C++ kernels:
- forward          y  = x @ W^T + b        on W's CSR (work: tokens x nonzeros)
- input gradient   gx = gy @ W             on W's CSC (same kernel, same work)
- weight gradient  'dense':   gW = gy^T @ x, a dense GEMM: the paper's semantics, so weights
                              off the support can enter at the next top-k projection;
                   'support': gW only on the support (SDDMM, work tokens x nonzeros), zero
                              elsewhere (used between regrowths, `sparsity.regrow_every`).
Anything the kernels do not cover (CUDA, non-float32, a missing compiler) runs F.linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsecircuits.kernels import library
from sparsecircuits.kernels.library import f32, i32

KERNEL_MODES = ("auto", "dense", "sparse")
WEIGHT_GRAD_MODES = ("dense", "support")


def sparse_is_faster(out_features: int, in_features: int, density: float) -> bool:
    """The crossover for `kernels: auto` (`benchmarks/sparse_kernels.py --crossover`).

    Measured on 2 busy cores, forward + input gradient at 4096 tokens (the weight gradient is
    a dense GEMM either way): up to 512 x 2048 the kernels were 1.5-2.4x faster than the
    dense matmuls at density 1/4; at 1024 x 4096 they broke even at 1/4 and were 2.7x faster
    at 1/8. `sparse` forces the kernels at any density.
    """
    limit = 0.25 if out_features * in_features <= 512 * 2048 else 0.125
    return density <= limit


@dataclass(frozen=True)
class SparseIndex:
    """The nonzeros of an [out, in] weight, as CSR (by output row) and CSC (by input column)."""

    shape: tuple[int, int]
    rowptr: Tensor  # [out + 1] int32
    csr_idx: Tensor  # [nnz] int32, input column of each nonzero, rows in order
    csr_val: Tensor  # [nnz] float32
    colptr: Tensor  # [in + 1] int32
    csc_idx: Tensor  # [nnz] int32, output row of each nonzero, columns in order
    csc_val: Tensor  # [nnz] float32

    @property
    def nnz(self) -> int:
        return int(self.csr_idx.numel())


def build_index(weight: Tensor) -> SparseIndex:
    """Index the nonzeros of a float32 CPU weight [out, in] (two passes over it)."""
    lib = library.load()
    w = weight.detach().contiguous()
    out_f, in_f = w.shape
    rowptr = torch.empty(out_f + 1, dtype=torch.int32)
    colptr = torch.empty(in_f + 1, dtype=torch.int32)
    nnz = lib.sc_count(f32(w), out_f, in_f, i32(rowptr), i32(colptr))
    csr_idx, csc_idx = (torch.empty(nnz, dtype=torch.int32) for _ in range(2))
    csr_val, csc_val = (torch.empty(nnz, dtype=torch.float32) for _ in range(2))
    cursor = torch.empty(in_f, dtype=torch.int32)
    lib.sc_fill(f32(w), out_f, in_f, i32(rowptr), i32(colptr), i32(csr_idx), f32(csr_val),
                i32(csc_idx), f32(csc_val), i32(cursor))
    return SparseIndex((out_f, in_f), rowptr, csr_idx, csr_val, colptr, csc_idx, csc_val)


def spmm(a: Tensor, rowptr: Tensor, idx: Tensor, val: Tensor, n_out: int,
         bias: Tensor | None = None) -> Tensor:
    """a [N, K] @ S^T (+ bias) for S [n_out, K] in CSR -> [N, n_out]."""
    a = a.contiguous()
    n, k = a.shape
    out = torch.empty(n, n_out, dtype=torch.float32)
    bias = bias.detach().contiguous() if bias is not None else None
    library.load().sc_spmm(f32(a), n, k, i32(rowptr), i32(idx), f32(val), n_out,
                           f32(bias) if bias is not None else None, f32(out),
                           torch.get_num_threads())
    return out


def backward(gy: Tensor, x: Tensor, index: SparseIndex, input_grad: bool,
             support_grad: bool) -> tuple[Tensor | None, Tensor | None]:
    """(gx = gy @ W, gW on the support as a dense [out, in] tensor), each only if asked.

    gy: [N, out] and x: [N, in], contiguous float32; one pass of the C++ backward kernel.
    """
    if not (input_grad or support_grad):
        return None, None
    out_f, in_f = index.shape
    n = gy.shape[0]
    gx = torch.empty(n, in_f, dtype=torch.float32) if input_grad else None
    gw = torch.zeros(out_f, in_f, dtype=torch.float32) if support_grad else None
    library.load().sc_backward(
        f32(gy), f32(x), n, out_f, in_f, i32(index.rowptr), i32(index.csr_idx),
        i32(index.colptr), i32(index.csc_idx), f32(index.csc_val),
        f32(gx) if gx is not None else None, f32(gw) if gw is not None else None,
        torch.get_num_threads())
    return gx, gw


class SparseLinearFunction(torch.autograd.Function):
    """Autograd for y = x @ W^T + b on W's nonzeros; x is [N, in], contiguous float32."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, index: SparseIndex,
                weight_grad: str) -> Tensor:
        ctx.index, ctx.weight_grad = index, weight_grad
        ctx.save_for_backward(x)
        return spmm(x, index.rowptr, index.csr_idx, index.csr_val, index.shape[0], bias)

    @staticmethod
    def backward(ctx, gy: Tensor):
        (x,) = ctx.saved_tensors
        index: SparseIndex = ctx.index
        gy = gy.contiguous()
        support = ctx.needs_input_grad[1] and ctx.weight_grad == "support"
        gx, gw = backward(gy, x, index, ctx.needs_input_grad[0], support)
        if ctx.needs_input_grad[1] and not support:
            gw = gy.t() @ x  # [out, in] dense GEMM: the exact (paper) weight gradient
        gb = None
        if ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gx, gw, gb, None, None


class SparseLinear(nn.Linear):
    """nn.Linear that runs on its weight's nonzeros when `kernels` selects it.

    kernels: 'dense' always F.linear; 'sparse' the kernels whenever they apply (CPU,
    float32); 'auto' the kernels when the weight's density is below the measured crossover.
    weight_grad: 'dense' (exact, the default) or 'support' (see the module docstring).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 kernels: str = "auto"):
        super().__init__(in_features, out_features, bias=bias)
        if kernels not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {KERNEL_MODES}, got {kernels!r}")
        self.kernels = kernels
        self.weight_grad = "dense"
        self._cache: dict[str, tuple[tuple, object]] = {}

    def _key(self) -> tuple:
        w = self.weight
        return (w.data_ptr(), w._version, tuple(w.shape))

    def _cached(self, name: str, make):
        key = self._key()
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = (key, make())
            self._cache[name] = hit
        return hit[1]

    def uses_sparse(self, x: Tensor) -> bool:
        """Whether this forward runs on the kernels (decided per call: the density changes)."""
        w = self.weight
        if self.kernels == "dense" or x.device.type != "cpu" or w.device.type != "cpu":
            return False
        if x.dtype != torch.float32 or w.dtype != torch.float32 or not library.available():
            return False
        if self.kernels == "sparse":
            return True
        nnz = self._cached("nnz", lambda: int(torch.count_nonzero(w.detach())))
        return sparse_is_faster(self.out_features, self.in_features, nnz / w.numel())

    def index(self) -> SparseIndex:
        """The nonzeros of the current weight (rebuilt when its version changes)."""
        return self._cached("index", lambda: build_index(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        if not self.uses_sparse(x):
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features).contiguous()
        y = SparseLinearFunction.apply(x2d, self.weight, self.bias, self.index(),
                                       self.weight_grad)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernels={self.kernels}"
