"""The config keys of the sparse kernels are validated like every other key."""

from __future__ import annotations

import pytest

from sparsecircuits.config import load_config
from sparsecircuits.errors import ConfigError


def test_kernels_and_regrow_every_are_validated():
    assert load_config("tiny").model.kernels == "auto"
    assert load_config("tiny").sparsity.regrow_every == 0
    assert load_config("tiny", {"model.kernels": "sparse"}).model.kernels == "sparse"
    with pytest.raises(ConfigError, match="model.kernels"):
        load_config("tiny", {"model.kernels": "fast"})
    with pytest.raises(ConfigError, match="regrow_every"):
        load_config("tiny", {"sparsity.regrow_every": -1})
