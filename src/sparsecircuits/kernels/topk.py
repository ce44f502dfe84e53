"""AbsTopK: keep the k largest |x| of each row, zero the rest (docs/sparse-kernels.md).

Both paths keep exactly the same set: every entry whose magnitude is at least the row's
k-th largest magnitude. A row with ties at that value therefore keeps more than k entries
(all of the tied ones); ties among nonzero floats are rare, and extra exact zeros change
nothing downstream. The gradient is the incoming gradient on the kept set, zero elsewhere.

- reference: `torch.topk(sorted=False)` for the threshold, then a compare and a multiply.
- fast (CPU, float32): per row, C++ finds the threshold exactly by binary search on the
  bits of |x| (vectorised counts) and writes the output and the kept mask together.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparsecircuits.kernels import library
from sparsecircuits.kernels.library import f32, u8


def abstopk_reference(x: Tensor, k: int) -> Tensor:
    """The torch definition: x * (|x| >= the k-th largest |x| of its row)."""
    if k >= x.shape[-1]:
        return x
    magnitude = x.detach().abs()
    threshold = magnitude.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)  # [..., 1]
    return x * (magnitude >= threshold)


class AbsTopKFunction(torch.autograd.Function):
    """y = x on the kept set, 0 elsewhere; dy/dx is the kept mask."""

    @staticmethod
    def forward(ctx, x: Tensor, k: int) -> Tensor:
        d = x.shape[-1]
        x2d = x.detach().reshape(-1, d).contiguous()
        y = torch.empty_like(x2d)
        mask = torch.empty(x2d.shape, dtype=torch.bool)
        library.load().sc_abstopk(f32(x2d), x2d.shape[0], d, k, f32(y), u8(mask),
                                  torch.get_num_threads())
        ctx.save_for_backward(mask)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask.view(grad.shape), None


def abstopk(x: Tensor, k: int, fast: bool = False) -> Tensor:
    """Keep the k largest-magnitude features of each row of x ([..., d]); zero the others.

    With `fast`, the C++ kernel runs where it applies (CPU float32 and the kernels built);
    it keeps the same set as the reference.
    """
    if k >= x.shape[-1]:
        return x
    if (fast and x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0
            and library.available()):
        return AbsTopKFunction.apply(x, k)
    return abstopk_reference(x, k)
