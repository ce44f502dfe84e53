"""Units and their names: which channels an explain run covers, and their activations.

    <hook point>.<index>       a node (`1.mlp.post_act.17`), a dense model's neuron at the
                               same place, or a residual channel (`1.resid_post.5`)
    sae.<sha12>.<index>        latent <index> of the SAE whose sae.safetensors has that sha256
                               prefix (the SAE is read at its own hook point)

Unknown names, locations and indices are one-line AutointerpErrors.
"""

from __future__ import annotations

import fnmatch
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sparsecircuits.autointerp import AutointerpError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.locations import parse_index
from sparsecircuits.sae.sae_file import SAEHandle
from sparsecircuits.viewer.node_stats import CorpusActivations, StatsConfig


@dataclass(frozen=True)
class Unit:
    """One channel to explain."""

    name: str  # the cache key (see the module docstring)
    location: str  # the hook point its activation is read at
    index: int
    sae: bool = False  # a latent of the run's SAE (else a channel of the model)


def sae_id(handle: SAEHandle) -> str:
    """The first 12 hex digits of the sha256 of the SAE's file."""
    return hashlib.sha256(Path(handle.path).read_bytes()).hexdigest()[:12]


def _locations_help(model: GPT) -> str:
    return (f"use a hook point such as 0.mlp.post_act or 1.resid_post "
            f"(layers 0..{model.cfg.n_layer - 1}), or a glob such as '*.mlp.post_act'")


def match_hook_points(model: GPT, patterns: Iterable[str]) -> list[str]:
    """Hook points matching any glob, in model order; an unmatched pattern is an error."""
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(model.hook_points, pattern)
        if not hits:
            raise AutointerpError(f"unknown location {pattern!r:.60}: {_locations_help(model)}")
        chosen.update(hits)
    return [p for p in model.hook_points if p in chosen]


def parse_unit(model: GPT, name: str, sae: SAEHandle | None = None,
               sae_hash: str | None = None) -> Unit:  # fmt: skip
    """The unit a name refers to; AutointerpError naming the problem if there is none."""
    head, _, tail = name.rpartition(".")
    index = parse_index(tail)
    if not head or index is None:
        raise AutointerpError(f"{name!r:.80} is not a unit name like 1.mlp.post_act.17 or "
                              "sae.<sha12>.17")  # fmt: skip
    if head.startswith("sae."):
        if sae is None or head != f"sae.{sae_hash}":
            raise AutointerpError(f"unknown unit {name!r:.80}: pass the SAE it belongs to "
                                  "with --sae (its name holds the SAE's sha256 prefix)")  # fmt: skip
        if index >= sae.sae.d_sae:
            raise AutointerpError(f"unknown unit {name!r:.80}: the SAE has {sae.sae.d_sae} latents")
        return Unit(name, sae.location, index, sae=True)
    width = model.hook_point_width.get(head)
    if width is None:
        raise AutointerpError(f"unknown unit {name!r:.80}: no location {head!r:.60}; "
                              f"{_locations_help(model)}")  # fmt: skip
    if index >= width:
        raise AutointerpError(f"unknown unit {name!r:.80}: {head} has {width} channels")
    return Unit(name, head, index)


def location_units(model: GPT, locations: Sequence[str]) -> list[Unit]:
    """Every channel of each location."""
    return [Unit(f"{loc}.{i}", loc, i) for loc in locations
            for i in range(model.hook_point_width[loc])]  # fmt: skip


def sae_units(sae: SAEHandle, sae_hash: str, latents: Sequence[int] | None = None) -> list[Unit]:
    """The SAE's latents (all, or the given indices)."""
    chosen = range(sae.sae.d_sae) if latents is None else latents
    return [Unit(f"sae.{sae_hash}.{i}", sae.location, i, sae=True) for i in chosen]


def sample_units(units: Sequence[Unit], n: int | None, seed: int = 0) -> list[Unit]:
    """Up to n units per location (and SAE), seeded; all of them when n is None."""
    if n is None:
        return list(units)
    groups: dict[tuple[str, bool], list[Unit]] = {}
    for u in units:
        groups.setdefault((u.location, u.sae), []).append(u)
    out = []
    for (location, is_sae), group in groups.items():
        # seeded by the location, so two models sample the same channels there
        rng = np.random.default_rng([seed, zlib.crc32(location.encode()), int(is_sae)])
        keep = sorted(rng.permutation(len(group))[:n].tolist())
        out += [group[i] for i in keep]
    return out


@torch.no_grad()
def unit_activations(
    corpus: CorpusActivations, units: Sequence[Unit], sae: SAEHandle | None = None
) -> Tensor:
    """Activations [N, T, len(units)] of units that share one location (and SAE-ness)."""
    location, is_sae = units[0].location, units[0].sae
    if any(u.location != location or u.sae != is_sae for u in units):
        raise ValueError("unit_activations takes units of one location")
    acts = corpus.location(location)  # [N, T, width]
    index = torch.tensor([u.index for u in units])
    if not is_sae:
        return acts[..., index]
    assert sae is not None
    parts = [sae.sae.encode(acts[i : i + 16].float())[..., index]
             for i in range(0, len(acts), 16)]  # fmt: skip
    return torch.cat(parts)


def corpus_activations(model: GPT, tokens: Tensor) -> CorpusActivations:
    """The viewer's activation cache over `tokens`, keeping one location at a time."""
    return CorpusActivations(model, tokens, StatsConfig(cached_locations=1))


def select_units(model: GPT, at: Sequence[str] | None = None, nodes: Sequence[str] | None = None,
                 sae: SAEHandle | None = None, sae_hash: str | None = None,
                 sample: int | None = None, seed: int = 0) -> list[Unit]:  # fmt: skip
    """The units of an explain request: every channel of the `at` locations (default: every
    node location when nothing else is asked for), the named `nodes`, and the SAE's latents
    (all of them when `sae` is given without latent names among `nodes`); `sample` keeps up
    to that many per location, seeded."""
    units: list[Unit] = []
    named = [parse_unit(model, n, sae, sae_hash) for n in nodes or []]
    if at:
        units += location_units(model, match_hook_points(model, at))
    elif not named and sae is None:
        units += location_units(model, model.locations)
    if sae is not None and not any(u.sae for u in named):
        assert sae_hash is not None
        units += sae_units(sae, sae_hash)
    units = sample_units(units, sample, seed)
    seen = {u.name for u in units}
    units += [u for u in named if u.name not in seen and not seen.add(u.name)]
    if not units:
        raise AutointerpError("no units to explain")
    return units
