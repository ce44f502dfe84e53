"""AdamW on the support only, for the steps between regrowths (`sparsity.regrow_every: R`).

On a support-only step (docs/sparse-kernels.md) a sparse-kernel matrix's gradient is zero off
its support, yet fused AdamW would still read and write all four [out, in] tensors (weight,
gradient, both moments) and move the off-support weights by their old momentum, only for the
projection to zero them again. Here those matrices leave the fused step and are updated on
their nonzeros alone: with S the flat support, g = grad[S], and the group's lr, betas, eps,
weight decay wd and the parameter's step count t (incremented like the fused step's),

    w[S] *= 1 - lr wd
    m[S] = b1 m[S] + (1 - b1) g          v[S] = b2 v[S] + (1 - b2) g^2
    w[S] -= lr / (1 - b1^t) * m[S] / (sqrt(v[S] / (1 - b2^t)) + eps)

which is torch's AdamW restricted to S. Off the support, weights stay zero and the moments
keep the values of the last dense step until the next one (R = 0 never comes here, so the
paper's exact path is untouched).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sparsecircuits.kernels import SparseLinear, library


def support_params(model: nn.Module) -> list[tuple[nn.Parameter, Tensor]]:
    """(weight, flat support indices) of every sparse-kernel matrix taking a support-only
    gradient this step; the support is the one its forward ran on (the cached index)."""
    out = []
    for module in model.modules():
        if not isinstance(module, SparseLinear) or module.weight_grad != "support":
            continue
        w = module.weight
        if w.device.type == "cpu" and w.dtype == torch.float32 and library.available():
            index = module.index()  # built by this step's forward: the weight is unchanged
            rows = torch.repeat_interleave(
                torch.arange(index.shape[0]), index.rowptr.diff().long()
            )  # [nnz]
            flat = rows * index.shape[1] + index.csr_idx.long()
        else:
            flat = w.detach().flatten().nonzero().squeeze(1)
        out.append((w, flat))
    return out


@torch.no_grad()
def step_on_support_(
    opt: torch.optim.AdamW, held: list[tuple[nn.Parameter, Tensor, Tensor]]
) -> None:
    """One AdamW step of each (weight, flat support, gradient) on the support (module docstring).

    The weights were left out of `opt.step()` (their .grad set to None); their state lives in
    `opt.state`, so checkpoints and resumption see one optimizer.
    """
    group_of = {p: g for g in opt.param_groups for p in g["params"]}
    for p, flat, grad in held:
        group = group_of[p]
        if group.get("amsgrad") or group.get("maximize"):
            raise ValueError("support-only AdamW supports neither amsgrad nor maximize")
        state = opt.state[p]
        if not state:  # never stepped: the state the fused step would have created
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        b1, b2 = group["betas"]
        w, m, v = p.view(-1), state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)
        g = grad.reshape(-1)[flat]  # [nnz]
        ms = m[flat].mul_(b1).add_(g, alpha=1 - b1)
        vs = v[flat].mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (vs.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
        ws = w[flat].mul_(1 - lr * wd).addcdiv_(ms, denom, value=-lr / (1 - b1**t))
        m[flat], v[flat], w[flat] = ms, vs, ws


def adamw_step(opt: torch.optim.AdamW, model: nn.Module, support_only: bool) -> None:
    """`opt.step()`, with the support-only matrices (if `support_only`) stepped on their
    support instead of by the fused dense step."""
    if not support_only:
        opt.step()
        return
    held = []
    for p, flat in support_params(model):
        if p.grad is not None:
            held.append((p, flat, p.grad))
            p.grad = None  # the fused step skips a parameter without a gradient
    opt.step()
    step_on_support_(opt, held)
    for p, _, grad in held:
        p.grad = grad
