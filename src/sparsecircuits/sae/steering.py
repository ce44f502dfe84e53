"""Interventions on one SAE latent, as a hook at the SAE's location (docs/sae.md).

The activation x is re-expressed through the SAE with its error kept, and only latent i
changes:

    z = encode(x),   x' = x + (z_i' - z_i) * W_dec[i]

with z_i' = value (clamp), value * z_i (scale) or 0 (ablate). Everything the SAE does not
reconstruct stays in x', so an intervention that leaves z_i as it is leaves x unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparsecircuits.errors import SAEError
from sparsecircuits.model.hooks import Hook
from sparsecircuits.sae.model import TopKSAE
from sparsecircuits.sae.sae_file import SAEHandle

OPS = ("clamp", "scale", "ablate")
MAX_ABS_VALUE = 1e6


def latent_hook(sae: TopKSAE, latent: int, op: str, value: float | None = None) -> Hook:
    """The hook that applies `op` to latent `latent` of `sae` at every position."""
    if op not in OPS:
        raise SAEError(f"unknown latent intervention {op!r}; use one of {', '.join(OPS)}")
    if isinstance(latent, bool) or not isinstance(latent, int) or not 0 <= latent < sae.d_sae:
        raise SAEError(f"latent {latent!r:.20} is not in 0..{sae.d_sae - 1}")
    if op != "ablate":
        if value is None or not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
            raise SAEError(f"{op} needs a finite value below 1e6 in size, got {value}")
    direction = sae.W_dec[latent].detach()  # [d_in]

    @torch.no_grad()
    def hook(x: Tensor) -> Tensor:
        z_i = sae.to(x.device).encode(x)[..., latent : latent + 1]  # [..., 1]
        if op == "clamp":
            new = torch.full_like(z_i, float(value))
        elif op == "scale":
            new = z_i * float(value)
        else:
            new = torch.zeros_like(z_i)
        return x + (new - z_i) * direction.to(x)

    return hook


def latent_hooks(handle: SAEHandle, latent: int, op: str, value: float | None = None) -> dict:
    """{the SAE's location: `latent_hook`}, ready for `model(tokens, hooks=...)`."""
    return {handle.location: latent_hook(handle.sae, latent, op, value)}
