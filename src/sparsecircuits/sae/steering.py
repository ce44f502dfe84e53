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


LATENT_OPS = ("clamp_max", "clamp", "scale", "ablate")
"""What a user may ask for: `clamp_max` x sets the latent to x times its max activation over
pretraining val tokens (`latent_max`), the others as in `latent_hook`."""


@torch.no_grad()
def latent_max(loaded, handle: SAEHandle, latent: int, windows: Tensor) -> float:
    """The largest value latent `latent` takes on windows [n, seq] of pretraining tokens."""
    from sparsecircuits.sae.activations import record

    check_latent(handle, latent)
    best = 0.0
    for start in range(0, len(windows), 16):
        x = record(loaded.model, windows[start : start + 16], handle.location)
        z = handle.sae.to(x.device).encode(x)[..., latent]
        best = max(best, float(z.max()))
    return best


def check_latent(handle: SAEHandle, latent: int) -> None:
    """SAEError unless `latent` is an index of the SAE."""
    d_sae = handle.sae.d_sae
    if isinstance(latent, bool) or not isinstance(latent, int) or not 0 <= latent < d_sae:
        raise SAEError(f"latent {latent!r:.20} is out of range: {handle.path.parent.name} has "
                       f"latents 0..{d_sae - 1}")  # fmt: skip


def resolve_op(op: str, value: float | None, max_value: float | None) -> tuple[str, float | None]:
    """(`latent_hook`'s op, its value) for a user op; `clamp_max` needs the latent's max."""
    if op not in LATENT_OPS:
        raise SAEError(f"unknown latent intervention {op!r}; use one of {', '.join(LATENT_OPS)}")
    if op != "clamp_max":
        return op, value
    if value is None or not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise SAEError(f"clamp_max needs a finite factor below 1e6 in size, got {value}")
    if max_value is None:
        raise SAEError("clamp_max needs the latent's max activation")
    return "clamp", float(value) * max_value


def describe_op(op: str, value: float | None, max_value: float | None = None) -> str:
    """How a printed result names the intervention, e.g. 'clamped to 10x its max (41.2)'."""
    if op == "clamp_max":
        return f"clamped to {value:g}x its max ({float(value) * float(max_value):.4g})"
    return {"scale": f"scaled by {value}", "clamp": f"clamped to {value}",
            "ablate": "zeroed"}[op]  # fmt: skip
