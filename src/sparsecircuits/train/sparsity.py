"""Weight sparsity (docs/method.md §3): after every optimiser step, keep only the
largest-magnitude entries of every sparse matrix.

Every weight matrix and bias keeps the same fraction of nonzeros: embedding, unembedding,
q/k/v/out projections, MLP in/out, their biases and the final logits bias. Not sparsified:
the bigram table (dense by design), RMSNorm gains (they can be folded into the next matrix)
and attention-sink logits (one scalar per head).

A neuron or channel is never left with fewer than `min_per_node` (j) nonzero weights: the
top-j entries of each row and column along a node axis are kept first, then the rest of the
budget goes to the largest remaining entries. When j x nodes exceeds the budget the matrix
keeps more than its target; `project_` reports that excess rather than hiding it.

Weight gradients (`sparsity.regrow_every`, docs/sparse-kernels.md): the paper takes a dense
gradient every step, so any weight can enter the support at the next projection (R = 0).
With R > 0, matrices running on the sparse kernels compute their gradient on the support only
(work follows the nonzeros) and a dense one every R steps, when new weights may enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparsecircuits.kernels import SparseLinear, projection
from sparsecircuits.model.roles import parameter_role


@dataclass(frozen=True)
class SparseParam:
    """A parameter under the L0 constraint and the axes along which its entries are nodes."""

    name: str
    param: nn.Parameter
    node_axes: tuple[int, ...]
    """Axes indexing neurons/channels, each of which keeps >= j nonzeros (empty for biases)."""


def sparse_parameters(model: nn.Module) -> list[SparseParam]:
    """The parameters the projection applies to, in parameter order, with their node axes:
    both as declared by their role (`sparsecircuits.model.roles`)."""
    out = []
    for name, p in model.named_parameters():
        role = parameter_role(name)
        if role.sparse:
            out.append(SparseParam(name, p, role.node_axes))
    return out


def keep_count(numel: int, fraction: float) -> int:
    """Number of entries a matrix of `numel` entries keeps at this fraction (at least 1)."""
    return max(1, min(numel, round(numel * fraction)))


def topk_mask(magnitude: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly k largest entries of a flat magnitude vector.

    The k-th largest value is found by `kthvalue` (a selection, not a sort); entries tied at
    the threshold are taken in index order until exactly k are kept.
    """
    n = magnitude.numel()
    if k >= n:
        return torch.ones_like(magnitude, dtype=torch.bool)
    threshold = magnitude.kthvalue(n - k + 1).values
    mask = magnitude > threshold
    missing = k - int(mask.sum())
    if missing > 0:
        ties = (magnitude == threshold).nonzero().squeeze(1)[:missing]
        mask[ties] = True
    return mask


def protected_mask(magnitude: Tensor, node_axes: tuple[int, ...], j: int) -> Tensor:
    """Entries kept regardless of the budget: the top-j of every node along each node axis."""
    protected = torch.zeros_like(magnitude, dtype=torch.bool)
    if j <= 0:
        return protected
    for axis in node_axes:
        # Entries of one node lie along the other axis: reduce over it.
        other = 1 - axis
        jj = min(j, magnitude.shape[other])
        idx = magnitude.topk(jj, dim=other).indices
        protected.scatter_(other, idx, True)
    return protected


def sparsity_mask(weight: Tensor, k: int, node_axes: tuple[int, ...], j: int) -> Tensor:
    """Mask keeping k entries of `weight` (more only where min-j forces it)."""
    magnitude = weight.detach().abs()
    protected = protected_mask(magnitude, node_axes, j) if weight.ndim == 2 else None
    flat = magnitude.flatten()
    if protected is None or not protected.any():
        return topk_mask(flat, k).view_as(weight)
    n_protected = int(protected.sum())
    if n_protected >= k:
        return protected
    # Rank the unprotected entries only: protected ones get -1 so they are never chosen twice.
    rest = flat.masked_fill(protected.flatten(), -1.0)
    chosen = topk_mask(rest, k - n_protected).view_as(weight)
    return chosen | protected


@dataclass(frozen=True)
class ProjectionStats:
    """What one projection did."""

    kept: int
    """Nonzero entries allowed in total (sum over matrices)."""
    target: int
    """Sum of the per-matrix targets keep_count(numel, fraction)."""
    over_target: dict[str, int]
    """Matrices whose min-j rule forced them above target: name -> entries over."""


@torch.no_grad()
def project_(params: list[SparseParam], fraction: float, j: int,
             fast: bool = False) -> ProjectionStats:
    """Zero all but the top fraction (by magnitude) of each parameter, in place.

    With `fast`, CPU float32 matrices are projected by the C++ kernel (one pass per matrix,
    `sparsecircuits.kernels.projection`), which keeps the same entries.
    """
    kept = target = 0
    over: dict[str, int] = {}
    for sp in params:
        w = sp.param  # in place on the parameter itself, so its version counter moves and
        # the sparse kernels' cached index of its nonzeros is rebuilt
        k = keep_count(w.numel(), fraction)
        target += k
        if k >= w.numel():
            kept += w.numel()
            continue
        if fast and projection.applies(w):
            n = projection.project_weight_(w, k, sp.node_axes, j)
        else:
            mask = sparsity_mask(w, k, sp.node_axes, j)
            n = int(mask.sum())
            w.mul_(mask)
        kept += n
        if n > k:
            over[sp.name] = n - k
    return ProjectionStats(kept=kept, target=target, over_target=over)


def nonzeros(params: list[SparseParam]) -> dict[str, int]:
    """Nonzero entries per sparse parameter."""
    return {sp.name: int(sp.param.detach().count_nonzero()) for sp in params}


def dense_gradient_step(step: int, regrow_every: int) -> bool:
    """Whether this step takes the dense weight gradient (every step when regrow_every is 0)."""
    return regrow_every <= 0 or step % regrow_every == 0


def set_weight_gradient(model: nn.Module, dense: bool) -> None:
    """Choose, for every sparse-kernel linear layer, a dense or a support-only weight gradient."""
    for module in model.modules():
        if isinstance(module, SparseLinear):
            module.weight_grad = "dense" if dense else "support"
