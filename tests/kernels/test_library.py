"""Without a C++ compiler the kernels fall back to torch with one warning, same numbers."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import warnings, torch
import torch.nn.functional as F
from sparsecircuits.kernels import SparseLinear, abstopk, abstopk_reference
layer = SparseLinear(8, 4, kernels="sparse")
x = torch.randn(3, 8)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert not layer.uses_sparse(x)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert torch.equal(abstopk(x, 2, fast=True), abstopk_reference(x, 2))
print(len(caught), caught[0].message if caught else "")
"""


def test_missing_compiler_falls_back_with_one_warning(tmp_path):
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"),
           "SPARSECIRCUITS_KERNEL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, message = done.stdout.strip().split(" ", 1)
    assert count == "1"
    assert message.startswith("sparse kernels unavailable (") and "dense" in message
    assert "\n" not in message
