"""Kernel tests compare against the torch path; they need the C++ kernels to be built."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.kernels import available


@pytest.fixture(autouse=True, scope="module")
def kernels_built():
    if not available():
        pytest.skip("the C++ kernels could not be built on this machine (no g++)")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal up to float reassociation: errors relative to the tensor's largest magnitude,
    so the check holds for any summation order, thread count or CPU."""
    assert actual.shape == expected.shape
    actual, expected = actual.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    err = float((actual - expected).abs().max()) if expected.numel() else 0.0
    assert err <= rtol * max(scale, 1e-30) + 1e-30, f"max error {err:.3g} vs scale {scale:.3g}"
