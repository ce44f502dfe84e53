"""SAE-feature circuits (Marks et al. 2024, *Sparse feature circuits*; docs/sae-circuits.md).

The pruner's units become the latents of SAEs spliced into the (dense) model, plus one error
node per SAE. At each SAE's hook point P (a residual-stream point such as `1.resid_post`),
with x [batch, seq, d_in] the activation the forward brings there:

    z   = encode(x)                    # [batch, seq, d_sae] latents
    err = x - decode(z)                # [batch, seq, d_in]  what the SAE misses
    z'  = a_z + g_z * (z - a_z)        # every latent masked like a node (circuits/masks.py)
    e'  = a_e + g_e * (err - a_e)      # the error term: ONE unit, one gate, per SAE
    x'  = decode(z') + e'

With every gate on, x' = x: the spliced model is the model, so the full-model losses are the
model's. `a` is the mean over pretraining windows of z (per latent) and of err (a [d_in]
vector), recorded in the clean model; pruning, the search on k, calibration, sufficiency and
necessity then run unchanged (`Pruner(..., layout=SAEMaskLayout(...))`).

Error terms (`errors`): "node" (the default, as Marks et al.) makes each SAE's error one
prunable unit, counted in the circuit's units when kept; "kept" never ablates them (gate
fixed at 1), which lets the dense error pathway carry whatever the latents miss.

Edges (`circuit_edges`): between kept units u at SAE point P_l and d at the next SAE point
P_{l+1}, the weight is Marks et al.'s linear attribution, summed over positions and averaged
over task examples,

    w(u -> d) = (1/N) sum_examples sum_t dm/dd_t * sum_s dd_t/du_s * (u_s - a_u)

(m = the task loss of the circuit's forward). It is computed exactly as the gradient of
sum(dm/dd . d) (dm/dd held fixed) with respect to a scale on (u - a_u) that is 1 in the forward.
Units in non-consecutive SAE points are not linked: everything from P_l reaches P_{l+2}
through P_{l+1}'s latents and error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparsecircuits.circuits.ablation import Ablation, MeanAblation, ZeroAblation
from sparsecircuits.circuits.config import loss_function
from sparsecircuits.circuits.forward import last_logits, length_chunks
from sparsecircuits.circuits.mask_training import frozen
from sparsecircuits.circuits.masks import MaskLayout
from sparsecircuits.errors import SAEError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import Hook
from sparsecircuits.sae.model import TopKSAE
from sparsecircuits.tasks.encoding import TaskBatch

ERROR_MODES = ("node", "kept")
LATENTS = "sae"
"""Suffix of a latent location: `<hook point>.sae`, node names `<hook point>.sae.<latent>`."""
ERROR = "sae_error"
"""Suffix of an error location: `<hook point>.sae_error`, one node `<hook point>.sae_error.0`."""
RECORD_BATCH = 16


def latent_location(point: str) -> str:
    return f"{point}.{LATENTS}"


def error_location(point: str) -> str:
    return f"{point}.{ERROR}"


class SAEMaskLayout(MaskLayout):
    """Mask units = the latents of each SAE (+ its error term): `saes[hook point]`."""

    def __init__(self, model: GPT, saes: Mapping[str, TopKSAE], errors: str = "node"):
        if errors not in ERROR_MODES:
            raise SAEError(f"unknown error-term mode {errors!r}; use one of {ERROR_MODES}")
        order = [p for p in model.hook_points if p in saes]
        unknown = sorted(set(saes) - set(order))
        if unknown:
            raise SAEError(f"the model has no hook point {unknown[0]!r}")
        for point in order:
            if saes[point].d_in != model.hook_point_width[point]:
                raise SAEError(f"the SAE at {point} encodes {saes[point].d_in}-wide activations, "
                               f"the model's are {model.hook_point_width[point]} wide")  # fmt: skip
        self.points = order
        self.saes = {p: saes[p] for p in order}
        self.errors = errors
        locations, widths = [], {}
        for point in order:
            locations.append(latent_location(point))
            widths[latent_location(point)] = saes[point].d_sae
            if errors == "node":
                locations.append(error_location(point))
                widths[error_location(point)] = 1
        super().__init__(locations, widths)

    def hooks(self, unit_gates: Tensor, replacements: Mapping[str, Tensor]) -> dict[str, Hook]:
        """One hook per SAE point (module docstring); skipped where every gate is fixed on."""
        return self.probe_hooks(unit_gates, replacements)

    def probe_hooks(
        self,
        unit_gates: Tensor,
        replacements: Mapping[str, Tensor],
        scales: Mapping[str, Tensor] | None = None,
        store: dict[str, Tensor] | None = None,
    ) -> dict[str, Hook]:
        """`hooks`, optionally with a scale on (value - a) per location (`scales[loc]`, 1 in
        the forward, for edge attribution) and recording the masked values in `store[loc]`."""
        gates = self.node_gates(unit_gates)
        out: dict[str, Hook] = {}
        for point in self.points:
            lat, err = latent_location(point), error_location(point)
            g_z, g_e = gates[lat], gates.get(err)
            fixed = not g_z.requires_grad and bool((g_z == 1).all())
            fixed = fixed and (g_e is None or (not g_e.requires_grad and bool((g_e == 1).all())))
            if fixed and scales is None and store is None:
                continue
            out[point] = _sae_hook(
                self.saes[point], lat, err, g_z, g_e, replacements, scales or {}, store
            )
        return out


def _sae_hook(sae: TopKSAE, lat: str, err_loc: str, g_z: Tensor, g_e: Tensor | None,
              replacements: Mapping[str, Tensor], scales: Mapping[str, Tensor],
              store: dict[str, Tensor] | None) -> Hook:  # fmt: skip
    def hook(x: Tensor) -> Tensor:  # x: [batch, seq, d_in]
        z = sae.encode(x)  # [batch, seq, d_sae]
        err = x - sae.decode(z)  # [batch, seq, d_in]
        a_z = replacements[lat].to(x)
        s_z = scales.get(lat)
        dz = (z - a_z) * s_z.to(x) if s_z is not None else z - a_z
        z_m = a_z + g_z.to(x) * dz
        if g_e is not None:
            a_e = replacements[err_loc].to(x)
            s_e = scales.get(err_loc)
            de = (err - a_e) * s_e.to(x) if s_e is not None else err - a_e
            err = a_e + g_e.to(x) * de  # g_e [1] broadcasts over d_in
        if store is not None:
            store[lat] = z_m
            if g_e is not None:
                store[err_loc] = err
        return sae.decode(z_m) + err

    return hook


@torch.no_grad()
def record_sae_means(model: GPT, layout: SAEMaskLayout, windows: Tensor) -> dict[str, Tensor]:
    """Mean latents [d_sae] and mean error [d_in] of every SAE over every position of windows
    [n, n_ctx], in the clean model: the mean ablation values of the layout's locations."""
    device = next(model.parameters()).device
    sums: dict[str, Tensor] = {}
    seen: dict[str, Tensor] = {}  # this chunk's latents and errors, filled by the hooks

    def make(point: str) -> Hook:
        sae = layout.saes[point]

        def hook(x: Tensor) -> Tensor:
            z = sae.encode(x)
            seen[latent_location(point)] = z
            seen[error_location(point)] = x - sae.decode(z)
            return x

        return hook

    hooks = {p: make(p) for p in layout.points}
    count = 0
    for start in range(0, len(windows), RECORD_BATCH):
        chunk = windows[start : start + RECORD_BATCH].to(device)
        model(chunk, hooks=hooks)
        for loc, t in seen.items():
            s = t.double().sum(dim=(0, 1)).cpu()
            sums[loc] = sums[loc] + s if loc in sums else s
        count += chunk.numel()
    means = {loc: (s / count).float() for loc, s in sums.items()}
    if layout.errors != "node":
        means = {loc: m for loc, m in means.items() if not loc.endswith(ERROR)}
    return means


def sae_ablation(kind: str, model: GPT, layout: SAEMaskLayout, windows: Tensor | None) -> Ablation:
    """Replacement values of latents and errors: 'mean' (over pretraining windows) or 'zero'."""
    if kind == "zero":
        widths = {loc: layout.widths[loc] for loc in layout.locations}
        widths.update({error_location(p): layout.saes[p].d_in for p in layout.points
                       if layout.errors == "node"})  # fmt: skip
        return ZeroAblation(widths, next(model.parameters()).device)
    if kind == "mean":
        if windows is None:
            raise SAEError("mean ablation of SAE latents needs pretraining windows")
        return MeanAblation(record_sae_means(model, layout, windows))
    raise SAEError(f"SAE circuits support mean or zero ablation, not {kind!r}")


@dataclass(frozen=True)
class EdgeCounts:
    """Edges of an SAE circuit between consecutive SAE points (module docstring)."""

    weights: list[tuple[str, str, float]]
    """(upstream node, downstream node, w) for every pair of kept units in consecutive points."""
    threshold: float
    """Relative threshold: an edge counts in `above` when |w| >= threshold * max |w|."""

    @property
    def nonzero(self) -> int:
        return sum(1 for _, _, w in self.weights if w != 0.0)

    @property
    def above(self) -> int:
        top = max((abs(w) for _, _, w in self.weights), default=0.0)
        return sum(1 for _, _, w in self.weights if top > 0 and abs(w) >= self.threshold * top)

    @property
    def pairs(self) -> int:
        return len(self.weights)


def _kept(layout: SAEMaskLayout, gates: Tensor, point: str) -> list[tuple[str, int]]:
    """(location, index) of the kept units at one SAE point."""
    per_loc = layout.node_gates(gates.detach().cpu())
    out = []
    for loc in (latent_location(point), error_location(point)):
        if loc in per_loc:
            out += [(loc, i) for i in torch.nonzero(per_loc[loc] > 0).flatten().tolist()]
    return out


def circuit_edges(
    model: GPT,
    layout: SAEMaskLayout,
    ablation: Ablation,
    gates: Tensor,
    batch: TaskBatch,
    loss: str = "two_way",
    threshold: float = 0.01,
    chunk: int = 64,
) -> EdgeCounts:
    """Attribution weights of every pair of kept units in consecutive SAE points, measured in
    the circuit's own forward (everything outside it ablated) over the examples of `batch`."""
    device = next(model.parameters()).device
    loss_fn = loss_function(loss)
    gates = gates.to(device)
    kept = {p: _kept(layout, gates, p) for p in layout.points}
    pairs = list(zip(layout.points, layout.points[1:], strict=False))
    totals: dict[tuple[str, str], float] = {}
    with frozen(model):
        for idx in length_chunks(batch.lengths, chunk):
            sub = batch.select(idx).to(device)
            reps = ablation.values(len(sub), sub.tokens.shape[1])
            scales = {loc: torch.ones(layout.widths[loc], device=device, requires_grad=True)
                      for loc in layout.locations}  # fmt: skip
            store: dict[str, Tensor] = {}
            hooks = layout.probe_hooks(gates, reps, scales, store)
            metric = loss_fn(last_logits(model, sub.tokens, sub.lengths, hooks), sub,
                             reduction="sum")  # fmt: skip
            names = list(store)
            grads = dict(zip(names, torch.autograd.grad(metric, [store[n] for n in names],
                                                        retain_graph=True), strict=True))  # fmt: skip
            for up, down in pairs:
                up_locs = [loc for loc in (latent_location(up), error_location(up))
                           if loc in scales]  # fmt: skip
                for loc, i in kept[down]:
                    value = store[loc] if loc.endswith(ERROR) else store[loc][..., i]
                    grad = grads[loc] if loc.endswith(ERROR) else grads[loc][..., i]
                    s_d = (grad.detach() * value).sum()
                    if not s_d.requires_grad:
                        continue  # nothing upstream reaches this unit
                    d_scales = torch.autograd.grad(s_d, [scales[u] for u in up_locs],
                                                   retain_graph=True, allow_unused=True)  # fmt: skip
                    by_loc = dict(zip(up_locs, d_scales, strict=True))
                    for u_loc, j in kept[up]:
                        g = by_loc[u_loc]
                        w = 0.0 if g is None else float(g[j])
                        key = (f"{u_loc}.{j}", f"{loc}.{i}")
                        totals[key] = totals.get(key, 0.0) + w
    n = max(len(batch), 1)
    weights = [(u, d, w / n) for (u, d), w in totals.items()]
    for up, down in pairs:  # pairs no example reached still count as (zero-weight) pairs
        for u_loc, j in kept[up]:
            for d_loc, i in kept[down]:
                key = (f"{u_loc}.{j}", f"{d_loc}.{i}")
                if key not in totals:
                    weights.append((key[0], key[1], 0.0))
    return EdgeCounts(weights, threshold)


def units_per_point(layout: SAEMaskLayout, nodes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Kept latents and error nodes per SAE point."""
    out = {p: {"latents": 0, "error": 0} for p in layout.points}
    for name in nodes:
        loc = name.rsplit(".", 1)[0]
        point, _, kind = loc.rpartition(".")
        out[point]["error" if kind == ERROR else "latents"] += 1
    return out
