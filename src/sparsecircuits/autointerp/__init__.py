"""Automated interpretability: an explanation and a score for every unit (docs/autointerp.md).

A unit is one channel of a hook point (a node such as `1.mlp.post_act.17`, a dense model's
neuron, a residual channel `1.resid_post.5`) or one latent of an SAE. Explainers (`offline`,
predicates over Python's own tokenizer; `llm`, any OpenAI-compatible chat endpoint) turn the
unit's activating contexts into a phrase; `scoring` measures every explanation the same way on
held-out contexts; `cache` keeps results per model content hash and unit.
"""

from sparsecircuits.errors import SparseCircuitsError


class AutointerpError(SparseCircuitsError):
    """A problem with an explain request: unknown unit or location, unusable cache, bad option."""
