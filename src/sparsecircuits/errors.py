"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class SparseCircuitsError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class ConfigError(SparseCircuitsError):
    """A config key, value or combination that cannot be used."""


class DataError(SparseCircuitsError):
    """A corpus, tokenizer or token shard that cannot be used."""


class CheckpointError(SparseCircuitsError):
    """A checkpoint directory that is missing, corrupt, foreign or of another format version."""


class TaskError(SparseCircuitsError):
    """A task that does not exist or cannot be expressed with the model's tokenizer."""


class CircuitError(SparseCircuitsError):
    """A pruning request or circuit file that cannot be used."""


class TrainingError(SparseCircuitsError):
    """A training run that cannot go on (its loss or weights stopped being finite numbers)."""


class SAEError(SparseCircuitsError):
    """A sparse-autoencoder request or SAE file that cannot be used (wrong model, corrupt...)."""
