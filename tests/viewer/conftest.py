"""Fixtures for the viewer: an artifacts directory holding the tiny run and real circuits.

    <artifacts>/runs/tiny/checkpoint/                  the tiny model (copied from tiny_run)
    <artifacts>/runs/tiny/circuits/handmade/circuit.json  hand-built (tests/viewer/handmade.py)
    <artifacts>/circuits/tiny/<task>/circuit.json      found by the real pruner (+ sidecar)
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint
from tests.viewer.handmade import handmade_circuit

TASK = "single_double_quote"  # expressible in the tiny model's 512-token BPE
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def one_torch_thread():
    """The tiny model's ops are far too small for two threads to help, and on a machine whose
    cores are busy (other tests, a training run) spinning threads slow every op down ~10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def artifacts(request, tmp_path_factory) -> Path:
    with one_torch_thread():  # session fixtures are set up before the package-wide setting
        tiny_run = request.getfixturevalue("tiny_run")
    root = tmp_path_factory.mktemp("artifacts")
    shutil.copytree(tiny_run / "checkpoint", root / "runs" / "tiny" / "checkpoint")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(artifacts) -> Path:
    return artifacts / "runs" / "tiny" / "checkpoint"


@pytest.fixture(scope="session")
def handmade(artifacts, tiny_checkpoint) -> Path:
    return handmade_circuit(tiny_checkpoint, TASK, artifacts / "runs" / "tiny" / "circuits"
                            / "handmade")


@pytest.fixture(scope="session")
def pruned(artifacts, tiny_checkpoint, tmp_path_factory) -> Path:
    """A circuit found by the real pruner, with a target set from the tiny model's own losses
    (a third of the way from the full model to everything ablated: it cannot reach 0.15)."""
    with one_torch_thread():
        return _prune(artifacts, tiny_checkpoint, tmp_path_factory)


def _prune(artifacts: Path, tiny_checkpoint: Path, tmp_path_factory) -> Path:
    from sparsecircuits.circuits.config import PruneConfig
    from sparsecircuits.circuits.pipeline import CircuitContext, find_circuit
    from sparsecircuits.circuits.pruner import Pruner
    from sparsecircuits.circuits.task_data import load_task_data

    loaded = load_checkpoint(tiny_checkpoint)
    cfg = PruneConfig(steps=30, batch_size=16, train_size=32, val_size=32, test_size=32,
                      mean_windows=8, target_loss=100.0)
    means_dir = tmp_path_factory.mktemp("means")
    pruner = Pruner(loaded.model, CircuitContext(loaded, cfg, means_dir).ablation(), cfg)
    data = load_task_data(TASK, loaded.tokenizer, cfg, loaded.config.model.n_ctx)
    full = pruner.loss(data.val, None)
    nothing = pruner.loss(data.val, torch.zeros(pruner.layout.n_units))
    assert nothing > full + 1e-3, "the tiny model no longer does better than its ablation"
    ctx = CircuitContext(loaded, cfg.replace(target_loss=full + (nothing - full) / 3), means_dir)
    circuit, tensors = find_circuit(ctx, TASK, controls=False, baseline=False)
    assert circuit.counts["nodes"] >= 3
    return circuit.save(artifacts / "circuits" / "tiny" / TASK, tensors)


@pytest.fixture(scope="session")
def pruned_id(pruned, artifacts) -> str:
    return pruned.relative_to(artifacts).as_posix()


@pytest.fixture(scope="session")
def test_artifacts() -> Path:
    """Screenshots and exported files kept after the run (gitignored)."""
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out
