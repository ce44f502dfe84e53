"""Intervention hooks against the model's own hook helpers and the pruner's definitions."""

from __future__ import annotations

import pytest
import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.model.hooks import Recorder, compose
from sparsecircuits.viewer.interventions import (
    Intervention,
    build_hooks,
    circuit_hooks,
    parse_interventions,
)
from sparsecircuits.viewer.node_stats import UnknownNodeError


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint).model


TOKENS = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))


def recorded(model, hooks, location="0.mlp.post_act"):
    rec = Recorder([location])
    with torch.no_grad():
        model(TOKENS, compose(hooks, rec.hooks))
    return rec.acts[location]


def test_each_op_does_what_it_says_at_every_position(model):
    plain = recorded(model, None)
    means = {"0.mlp.post_act": torch.full((128,), 0.25)}
    cases = {
        "ablate_zero": (None, torch.zeros(2, 12)),
        "ablate_mean": (None, torch.full((2, 12), 0.25)),
        "clamp": (3.0, torch.full((2, 12), 3.0)),
        "scale": (-2.0, -2.0 * plain[..., 9]),
    }
    for op, (value, expected) in cases.items():
        ivs = parse_interventions([{"node": "0.mlp.post_act.9", "op": op, "value": value}], model)
        acts = recorded(model, build_hooks(ivs, means))
        assert torch.allclose(acts[..., 9], expected), op
        others = [i for i in range(128) if i != 9]
        assert torch.equal(acts[..., others], plain[..., others]), op


def test_circuit_hooks_keep_the_circuit_and_replace_the_rest(model):
    values = {loc: torch.full((w,), 0.5) for loc, w in model.location_width.items()}
    acts = recorded(model, circuit_hooks(model, ["0.mlp.post_act.4"], values))
    assert torch.all(acts[..., [i for i in range(128) if i != 4]] == 0.5)
    assert not torch.all(acts[..., 4] == 0.5)  # the kept node keeps its own activation
    everything = [f"{loc}.{i}" for loc, w in model.location_width.items() for i in range(w)]
    with torch.no_grad():
        assert torch.equal(model(TOKENS, circuit_hooks(model, everything, values)), model(TOKENS))


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        ({"node": "0.mlp.post_act.9", "op": "melt"}, SparseCircuitsError, "unknown op"),
        ({"node": "0.mlp.post_act.9", "op": "scale", "value": float("nan")},
         SparseCircuitsError, "finite"),
        ({"node": "0.mlp.post_act.9", "op": "scale", "value": True}, SparseCircuitsError,
         "numeric"),
        ({"node": "0.mlp.post_act.999", "op": "ablate_zero"}, UnknownNodeError, "128 nodes"),
        ({"op": "ablate_zero"}, SparseCircuitsError, "node name"),
        ("0.mlp.post_act.9", SparseCircuitsError, "must be an object"),
    ],
)
def test_bad_interventions_are_rejected(model, item, error, message):
    with pytest.raises(error, match=message):
        parse_interventions([item], model)


def test_circuit_hooks_name_a_node_the_model_lacks(model):
    values = {loc: torch.zeros(w) for loc, w in model.location_width.items()}
    with pytest.raises(UnknownNodeError, match="128 nodes"):
        circuit_hooks(model, ["0.mlp.post_act.999"], values)


def test_mean_ablation_without_means_is_an_error(model):
    with pytest.raises(SparseCircuitsError, match="no mean"):
        build_hooks([Intervention("0.mlp.post_act.9", "ablate_mean")], None)
