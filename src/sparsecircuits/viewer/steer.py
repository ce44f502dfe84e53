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
from sparsecircuits.train.sampling import check_sampling, generate_text
from sparsecircuits.viewer.interventions import Intervention, build_hooks

# Upper bounds the viewer adds to `sample`'s checks: a request to the server must stay cheap.
MAX_NEW_TOKENS = 512
MAX_TEMPERATURE = 10.0


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
    """Both generations; SparseCircuitsError (before any work) for a value out of range."""
    check_settings(prompt, tokens, temperature, top_k, seed)
    hooks = build_hooks(interventions, means)
    plain = generate_text(loaded, prompt, tokens, temperature, top_k, seed)
    steered = generate_text(loaded, prompt, tokens, temperature, top_k, seed, hooks)
    return SteerResult(prompt, plain, steered)


def check_settings(
    prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int
) -> None:
    """SparseCircuitsError for a generation setting out of range (the CLI checks up front)."""
    if not prompt:
        raise SparseCircuitsError("the prompt must not be empty")
    check_sampling(tokens, temperature, top_k, seed)
    if tokens > MAX_NEW_TOKENS:
        raise SparseCircuitsError(f"tokens must be between 1 and {MAX_NEW_TOKENS}, got {tokens}")
    if temperature > MAX_TEMPERATURE:
        raise SparseCircuitsError(
            f"temperature must be between 0 and {MAX_TEMPERATURE:g}, got {temperature}")
