"""Steering: generate text with and without node interventions (the "Golden Gate" demo).

With the same seed and (by default) greedy decoding, the only difference between the two
generations is the intervention, e.g. scaling the quote-type neuron by -1 makes the model close
a `"` string with `'`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.train.cli import generate_text
from sparsecircuits.viewer.interventions import Intervention, build_hooks

MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class SteerResult:
    prompt: str
    """The prompt as given."""
    plain: str
    """Prompt + continuation without intervention."""
    steered: str
    """Prompt + continuation with the interventions applied at every position."""


def steer(
    loaded: Loaded,
    prompt: str,
    interventions: Sequence[Intervention],
    tokens: int = 32,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    means: Mapping[str, Tensor] | None = None,
) -> SteerResult:
    """Both generations; SparseCircuitsError for an empty prompt or a bad token count."""
    if not prompt:
        raise SparseCircuitsError("the prompt must not be empty")
    if not 1 <= tokens <= MAX_NEW_TOKENS:
        raise SparseCircuitsError(f"tokens must be between 1 and {MAX_NEW_TOKENS}, got {tokens}")
    if temperature < 0:
        raise SparseCircuitsError(f"temperature must be >= 0, got {temperature}")
    hooks = build_hooks(interventions, means)
    plain = generate_text(loaded, prompt, tokens, temperature, top_k, seed)
    steered = generate_text(loaded, prompt, tokens, temperature, top_k, seed, hooks)
    return SteerResult(prompt, plain, steered)
