"""Sampling text from a checkpoint (`sparsecircuits sample`, and the viewer's steering), with
the generation settings checked before any work."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from sparsecircuits.config import MAX_SEED
from sparsecircuits.errors import SparseCircuitsError

if TYPE_CHECKING:
    from sparsecircuits.checkpoint import Loaded
    from sparsecircuits.model.hooks import Hooks


def check_sampling(tokens: int, temperature: float, top_k: int | None, seed: int) -> None:
    """SparseCircuitsError naming the first generation setting out of range."""
    if tokens < 1:
        raise SparseCircuitsError(f"--tokens must be >= 1, got {tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise SparseCircuitsError(
            f"--temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if top_k is not None and top_k < 1:
        raise SparseCircuitsError(f"--top-k must be >= 1, got {top_k}")
    if not 0 <= seed <= MAX_SEED:
        raise SparseCircuitsError(f"--seed must be in [0, {MAX_SEED}], got {seed}")


def generate_text(
    loaded: Loaded,
    prompt: str,
    tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    hooks: Hooks | None = None,
) -> str:
    """Prompt + sampled continuation, decoded."""
    check_sampling(tokens, temperature, top_k, seed)
    ids = loaded.tokenizer.encode(prompt).ids
    if not ids:
        raise SparseCircuitsError("--prompt must not be empty")
    gen = torch.Generator().manual_seed(seed)
    out = loaded.model.generate(torch.tensor([ids]), tokens, temperature, top_k, hooks, gen)
    return loaded.tokenizer.decode(out[0].tolist())
