"""The one error of this package: a problem with an OpenAI-format model (docs/openai.md)."""

from sparsecircuits.errors import SparseCircuitsError


class OpenAIFormatError(SparseCircuitsError):
    """An OpenAI circuit-sparsity model directory that cannot be read, or a model of ours that
    their format cannot hold; the message is one line naming the field, file or tensor."""
