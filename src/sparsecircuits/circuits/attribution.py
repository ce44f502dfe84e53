"""The baseline the paper beats: rank nodes by gradient attribution instead of learned masks.

    score_u = mean over examples e of | sum over positions t of (x_u,e,t - a_u) * dL_e/dx_u,e,t |

i.e. |activation x gradient|, measured from the node's ablation value a (0 under zero ablation,
which gives the textbook |x * grad|; the mean under mean ablation, which makes the score the
first-order estimate of what ablating the node does to example e's task loss). Positions are
summed before the absolute value because a node is pruned at all positions at once. Computed
exactly per example as the gradient of each example's loss with respect to its own gate, in
the full model. With tied q/k masks a unit's score is the sum over its two nodes.
The same search on k then picks the smallest top-k circuit reaching the target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparsecircuits.circuits.ablation import Ablation
from sparsecircuits.circuits.config import loss_function
from sparsecircuits.circuits.forward import last_logits, length_chunks
from sparsecircuits.circuits.mask_training import frozen
from sparsecircuits.circuits.masks import MaskLayout
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook
from sparsecircuits.tasks.encoding import TaskBatch


def attribution_scores(
    model: GPT,
    layout: MaskLayout,
    ablation: Ablation,
    batch: TaskBatch,
    chunk: int = 64,
    loss: str = "task",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Scores [n_units] (see module docstring), averaged over the examples of `batch`."""
    device = next(model.parameters()).device
    total = torch.zeros(layout.n_units)
    loss_fn = loss_function(loss)
    with frozen(model):
        for idx in length_chunks(batch.lengths, chunk):
            sub = batch.select(idx).to(device)
            n, seq = sub.tokens.shape
            reps = ablation.values(n, seq, generator)
            # One gate per (example, unit), all 1: d loss_e / d gate[e, u] is the attribution.
            gates = torch.ones(n, layout.n_units, device=device, requires_grad=True)
            hooks: dict[str, Hook] = {
                loc: _gate_hook(gates[:, units.to(device)].unsqueeze(1), reps[loc])
                for loc, units in layout.unit_of.items()
            }  # gates[:, units]: [n, 1, width]
            logits = last_logits(model, sub.tokens, sub.lengths, hooks)
            (grad,) = torch.autograd.grad(loss_fn(logits, sub, reduction="sum"), gates)
            total += grad.abs().sum(0).cpu()  # [n_units]
    return total / len(batch)


def _gate_hook(g: Tensor, a: Tensor) -> Hook:
    def hook(x: Tensor) -> Tensor:
        return a + g * (x - a)

    return hook
