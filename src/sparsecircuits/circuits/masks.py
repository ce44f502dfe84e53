"""Node masks (docs/method.md §6): one parameter tau per mask unit, gate = Heaviside(tau).

    gate_u = 1[tau_u > 0]                              forward: a hard 0/1 gate
    d gate_u / d tau_u := sigmoid'(tau_u / T) / T      backward: straight-through surrogate
    x_masked = a + gate * (x - a)                      at every node location, every token

where `a` is the ablation value of the node (mean, zero or resample; see ablation.py). A *unit*
is what one tau controls: one node, or with `tie_qk` the pair (q channel i, k channel i) of a
layer (head h, channel c: i = h * d_head + c), since a query channel only acts through its dot
product with the same key channel (the paper's suggested fix). Units are numbered in model
order; `MaskLayout` maps them to nodes and back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from sparsecircuits.model.hooks import Hook
from sparsecircuits.model.locations import parse_node


class HeavisideSTE(torch.autograd.Function):
    """Heaviside step forward (tau > 0 keeps), sigmoid-derivative surrogate backward."""

    @staticmethod
    def forward(ctx, tau: Tensor, temp: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(tau)
        ctx.temp = temp
        return (tau > 0).to(tau.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (tau,) = ctx.saved_tensors
        s = torch.sigmoid(tau / ctx.temp)
        return grad * s * (1 - s) / ctx.temp, None


def heaviside(tau: Tensor, temp: float = 1.0) -> Tensor:
    """Hard 0/1 gates with a surrogate gradient of temperature `temp`."""
    return HeavisideSTE.apply(tau, temp)


class MaskLayout:
    """Which mask unit controls each node: `unit_of[location]` is a LongTensor [width]."""

    def __init__(self, locations: Sequence[str], widths: Mapping[str, int], tie_qk: bool = False):
        self.locations = list(locations)
        self.widths = {loc: int(widths[loc]) for loc in self.locations}
        self.tie_qk = tie_qk
        self.unit_of: dict[str, Tensor] = {}
        n = 0
        for loc in self.locations:
            width = self.widths[loc]
            partner = loc[: -len(".k")] + ".q" if loc.endswith(".attn.k") else None
            if tie_qk and partner in self.unit_of:
                if self.widths[partner] != width:
                    raise ValueError(f"{loc} and {partner} differ in width; cannot tie q/k")
                self.unit_of[loc] = self.unit_of[partner]
                continue
            self.unit_of[loc] = torch.arange(n, n + width)
            n += width
        self.n_units = n
        size = torch.zeros(n)
        for idx in self.unit_of.values():
            size.index_add_(0, idx, torch.ones(len(idx)))
        self.unit_size = size  # [n_units] nodes controlled by each unit (1, or 2 when tied)
        self.n_nodes = int(size.sum())

    @classmethod
    def for_model(cls, model: nn.Module, tie_qk: bool = False) -> MaskLayout:
        return cls(model.locations, model.location_width, tie_qk)

    def node_gates(self, unit_gates: Tensor) -> dict[str, Tensor]:
        """Per-location gates [width] from unit gates [n_units] (differentiable)."""
        return {loc: unit_gates[idx.to(unit_gates.device)] for loc, idx in self.unit_of.items()}

    def nodes(self, unit_gates: Tensor) -> list[str]:
        """Names of the nodes whose gate is on (`<location>.<index>`), in model order."""
        out = []
        for loc, gates in self.node_gates(unit_gates.detach().cpu()).items():
            out += [f"{loc}.{i}" for i in torch.nonzero(gates > 0).flatten().tolist()]
        return out

    def unit_gates_for_nodes(self, nodes: Sequence[str]) -> Tensor:
        """Unit gates [n_units] that keep exactly the units of the given nodes."""
        gates = torch.zeros(self.n_units)
        for node in nodes:
            loc, index = parse_node(node)
            if loc not in self.unit_of or not 0 <= index < self.widths[loc]:
                raise KeyError(node)
            gates[self.unit_of[loc][index]] = 1.0
        return gates

    def kept_nodes(self, unit_gates: Tensor) -> Tensor:
        """Number of nodes kept: sum of gate x nodes-per-unit (differentiable)."""
        return (unit_gates * self.unit_size.to(unit_gates)).sum()

    def top_units(self, scores: Tensor, k: int) -> Tensor:
        """0/1 unit gates [n_units] keeping the k highest-scoring units (ties: lower index)."""
        order = ranking(scores)
        gates = torch.zeros(self.n_units)
        gates[order[:k]] = 1.0
        return gates

    def hooks(self, unit_gates: Tensor, replacements: Mapping[str, Tensor]) -> dict[str, Hook]:
        """The model hooks that apply `unit_gates` [n_units]: the one place the pruner, mask
        training and validation turn gates into a forward pass. Here the units are the
        model's nodes (`masked_hooks`); a layout over other units (e.g. SAE latents,
        `sae.circuit.SAEMaskLayout`) overrides this and nothing else."""
        return masked_hooks(self, unit_gates, replacements)


def ranking(scores: Tensor) -> Tensor:
    """Unit indices from highest to lowest score, ties broken by index (deterministic)."""
    return torch.sort(scores.detach().cpu().float(), descending=True, stable=True).indices


def masked_hooks(
    layout: MaskLayout, unit_gates: Tensor, replacements: Mapping[str, Tensor]
) -> dict[str, Hook]:
    """Hooks x -> a + gate * (x - a) at every location whose gates are not all on.

    `replacements[loc]` is the ablation value `a`, broadcastable to the activation
    [batch, seq, width] (a [width] mean, or [batch, seq, width] resampled values).
    """
    hooks: dict[str, Hook] = {}
    for loc, g in layout.node_gates(unit_gates).items():
        if not g.requires_grad and bool((g == 1).all()):
            continue  # the full model here: skip the arithmetic

        def hook(x: Tensor, g: Tensor = g, a: Tensor = replacements[loc]) -> Tensor:
            a = a.to(x)
            return a + g.to(x) * (x - a)

        hooks[loc] = hook
    return hooks


class NodeMasks(nn.Module):
    """The learned mask parameters tau [n_units], initialised ~ N(bias, scale), kept in [-1, 1]."""

    def __init__(
        self,
        layout: MaskLayout,
        init_bias: float,
        init_scale: float,
        temp: float,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.layout = layout
        self.temp = temp
        tau = torch.randn(layout.n_units, generator=generator) * init_scale + init_bias
        self.tau = nn.Parameter(tau.clamp(-1.0, 1.0))  # shape: [n_units]

    def gates(self) -> Tensor:
        """Hard gates [n_units] carrying the surrogate gradient."""
        return heaviside(self.tau, self.temp)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.tau.clamp_(-1.0, 1.0)

    def hooks(self, replacements: Mapping[str, Tensor]) -> tuple[dict[str, Hook], Tensor]:
        """(hooks for one forward pass, the unit gates they use)."""
        gates = self.gates()
        return self.layout.hooks(gates, replacements), gates
