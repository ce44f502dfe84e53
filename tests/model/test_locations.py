"""The node vocabulary: one parser, and the model builds exactly the locations it names."""

import pytest

from sparsecircuits.config import ModelConfig
from sparsecircuits.errors import SparseCircuitsError
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.locations import (
    ATTN_LOCATIONS,
    MLP_LOCATIONS,
    NODE_KINDS,
    UnknownNodeError,
    node_kind,
    parse_node,
    parse_node_name,
)


def test_the_model_builds_the_declared_locations_in_forward_order():
    model = GPT(ModelConfig(vocab_size=50, n_layer=2, d_model=32, n_ctx=8))
    expected = [
        f"{layer}.{part}.{loc}"
        for layer in range(2)
        for part, locs in (("attn", ATTN_LOCATIONS), ("mlp", MLP_LOCATIONS))
        for loc in locs
    ]
    assert model.locations == expected == list(model.location_width)
    assert {node_kind(loc) for loc in model.locations} == set(NODE_KINDS)


def test_every_location_of_the_model_parses_back():
    model = GPT(ModelConfig(vocab_size=50, n_layer=2, d_model=32, n_ctx=8))
    for loc in model.locations:
        assert parse_node(f"{loc}.0") == (loc, 0)


@pytest.mark.parametrize("name", ["0.mlp.q.3", "0.attn.post_act.3", "0.resid_pre.3", "x.mlp.act_in.1",
                                  "00.mlp.act_in.1", "0.mlp.post_act", "0.mlp.post_act.1 "])
def test_a_name_outside_the_vocabulary_is_refused_by_both_faces(name):
    assert parse_node_name(name) is None
    with pytest.raises(SparseCircuitsError, match="not a node name|unknown node"):
        parse_node(name)


def test_a_well_formed_name_at_an_unknown_location_is_an_unknown_node():
    with pytest.raises(UnknownNodeError, match="has no location '0.mlp.nope'"):
        parse_node("0.mlp.nope.1")
    with pytest.raises(SparseCircuitsError, match="not a node name") as info:
        parse_node("0.mlp.post_act.07")
    assert not isinstance(info.value, UnknownNodeError)
