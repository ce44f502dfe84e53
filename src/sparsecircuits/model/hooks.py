"""One hook mechanism for recording, ablating and steering activations at node locations.

The model's forward takes an explicit mapping `{location: fn}`; at each node location the
activation `x` ([batch, seq, width]) is replaced by `fn(x)`. There is no global or
module-level hook state, so hooks nest and compose freely and cannot leak between calls.

    rec = Recorder(match_locations(model.locations, ["*.mlp.post_act"]))
    model(tokens, hooks=rec.hooks)          # rec.acts["0.mlp.post_act"]: [batch, seq, d_mlp]
    model(tokens, hooks=compose(rec.hooks, set_nodes({"0.mlp.post_act": {7: 0.0}})))

The residual stream has hook points too (`L.resid_pre`, `L.resid_mid`, `L.resid_post`,
`final_resid`; `model.hook_points` lists them with the node locations): the same hooks record
and patch it, but only node locations are units of a circuit (`model.locations`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from sparsecircuits.errors import SparseCircuitsError

Hook = Callable[[Tensor], Tensor]
Hooks = Mapping[str, Hook]


def match_locations(locations: Sequence[str], patterns: str | Iterable[str]) -> list[str]:
    """Locations matching any glob pattern, in model order; a pattern matching nothing is an error."""
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(locations, pattern)
        if not hits:
            raise SparseCircuitsError(f"no node location matches '{pattern}'")
        chosen.update(hits)
    return [loc for loc in locations if loc in chosen]


def apply_hook(hooks: Hooks | None, name: str, x: Tensor) -> Tensor:
    """`hooks[name](x)` when the caller hooked `name`, else `x` unchanged."""
    return hooks[name](x) if hooks is not None and name in hooks else x


def compose(*hook_maps: Hooks | None) -> dict[str, Hook]:
    """Chain hook maps: where two name the same location, the earlier one runs first."""
    out: dict[str, Hook] = {}
    for hooks in hook_maps:
        for name, fn in (hooks or {}).items():
            if name in out:
                first = out[name]
                out[name] = lambda x, f=first, g=fn: g(f(x))
            else:
                out[name] = fn
    return out


class Recorder:
    """Records the activations at the given locations on every forward it is passed to."""

    def __init__(self, locations: Iterable[str], detach: bool = True):
        self.locations = list(locations)
        self.detach = detach
        self.acts: dict[str, Tensor] = {}  # location -> [batch, seq, width]

    def _record(self, name: str) -> Hook:
        def hook(x: Tensor) -> Tensor:
            self.acts[name] = x.detach() if self.detach else x
            return x

        return hook

    @property
    def hooks(self) -> dict[str, Hook]:
        return {name: self._record(name) for name in self.locations}


def set_nodes(values: Mapping[str, Mapping[int, float | Tensor]]) -> dict[str, Hook]:
    """Replace single nodes by fixed values (clamping / ablation): {location: {index: value}}."""

    def make(assignments: Mapping[int, float | Tensor]) -> Hook:
        index = torch.tensor(list(assignments), dtype=torch.long)
        vals = [torch.as_tensor(v, dtype=torch.float32) for v in assignments.values()]

        def hook(x: Tensor) -> Tensor:
            x = x.clone()
            x[..., index] = torch.stack(vals).to(x)
            return x

        return hook

    return {loc: make(assign) for loc, assign in values.items() if assign}


def scale_nodes(values: Mapping[str, Mapping[int, float]]) -> dict[str, Hook]:
    """Multiply single nodes by a factor (steering): {location: {index: factor}}."""

    def make(assignments: Mapping[int, float]) -> Hook:
        index = torch.tensor(list(assignments), dtype=torch.long)
        factor = torch.tensor(list(assignments.values()), dtype=torch.float32)

        def hook(x: Tensor) -> Tensor:
            x = x.clone()
            x[..., index] = x[..., index] * factor.to(x)
            return x

        return hook

    return {loc: make(assign) for loc, assign in values.items() if assign}
