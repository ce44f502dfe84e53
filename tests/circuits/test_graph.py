"""The edge rule, on hand-set weights (graph.py's docstring states it)."""

import torch

from sparsecircuits.circuits.graph import circuit_graph
from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from tests.circuits.planted import PLANTED, A, B, X, Y, planted_model


def _zero_model(n_layer: int = 2) -> GPT:
    model = GPT(ModelConfig(vocab_size=300, n_layer=n_layer, d_model=32, d_head=16, n_ctx=16))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("norm.weight"):
                p.zero_()
    return model


def _graph(model, nodes, **kw):
    return circuit_graph(model.state_dict(), model.cfg.n_layer, nodes, **kw)


def test_paper_example_one_neuron_reading_one_channel_and_writing_one_is_3_nodes_2_edges():
    model = _zero_model(1)
    with torch.no_grad():
        model.blocks[0].mlp.fc_in.weight[40, 3] = 0.5  # neuron 40 reads channel 3
        model.blocks[0].mlp.fc_out.weight[11, 40] = -2.0  # and writes channel 11
        model.blocks[0].mlp.fc_in.weight[41, 3] = 1.0  # another neuron, not in the circuit
    nodes = ["0.mlp.act_in.3", "0.mlp.post_act.40", "0.mlp.resid_delta.11"]
    g = _graph(model, nodes)
    assert sorted(g.edges) == [
        ("0.mlp.act_in.3", "0.mlp.post_act.40", 0.5),
        ("0.mlp.post_act.40", "0.mlp.resid_delta.11", -2.0),
    ]
    assert g.counts()["edges"] == 2 and len(nodes) == 3


def test_an_edge_needs_a_nonzero_weight_and_both_ends_in_the_circuit():
    model = _zero_model(1)
    with torch.no_grad():
        model.blocks[0].mlp.fc_in.weight[40, 3] = 0.5
    assert _graph(model, ["0.mlp.act_in.3", "0.mlp.post_act.41"]).edges == []  # zero weight
    assert _graph(model, ["0.mlp.act_in.3"]).edges == []  # other end pruned
    assert _graph(model, ["0.mlp.post_act.40"]).edges == []


def test_attention_edges_q_k_only_incoming_v_to_the_write():
    model = _zero_model(1)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_proj.weight[17, 2] = 1.0  # head 1 channel 1 reads channel 2
        attn.k_proj.weight[17, 2] = 1.0
        attn.v_proj.weight[4, 2] = 1.0
        attn.out_proj.weight[9, 4] = 1.0  # v channel 4 -> write channel 9
        attn.out_proj.weight[9, 17] = 1.0  # a q/k index: out_proj reads v channels only
    nodes = ["0.attn.act_in.2", "0.attn.q.17", "0.attn.k.17", "0.attn.v.4", "0.attn.resid_delta.9"]
    edges = {(s, t) for s, t, _ in _graph(model, nodes).edges}
    assert edges == {
        ("0.attn.act_in.2", "0.attn.q.17"),
        ("0.attn.act_in.2", "0.attn.k.17"),
        ("0.attn.act_in.2", "0.attn.v.4"),
        ("0.attn.v.4", "0.attn.resid_delta.9"),
    }


def test_residual_links_join_a_write_to_later_reads_of_its_channel_and_are_not_edges():
    model = _zero_model(2)
    nodes = [
        "0.attn.resid_delta.5",
        "0.mlp.act_in.5",
        "0.attn.act_in.5",
        "1.attn.act_in.5",
        "1.mlp.resid_delta.5",
        "1.mlp.act_in.6",
    ]
    g = _graph(model, nodes)
    assert g.residual_links == [
        ("0.attn.resid_delta.5", "0.mlp.act_in.5"),
        ("0.attn.resid_delta.5", "1.attn.act_in.5"),
    ]  # not the same-sublayer read, not another channel, nothing after the last write
    assert g.counts()["edges"] == 0


def test_embedding_and_unembedding_edges_count_task_tokens_and_circuit_channels():
    model = planted_model()
    g = _graph(model, PLANTED, task_tokens=[A, B, 20], candidate_tokens=[X, Y])
    # Token 20 is a task token, but it writes only channels no circuit node reads.
    assert sorted(g.embed_edges) == [
        (f"embed.{A}", "resid.3", 1.0),
        (f"embed.{B}", "resid.3", -1.0),
    ]
    assert [(s, t) for s, t, _ in sorted(g.unembed_edges)] == [
        ("resid.7", f"unembed.{X}"),
        ("resid.7", f"unembed.{Y}"),
    ]
    counts = g.counts()
    assert (counts["edges"], counts["embed_edges"], counts["unembed_edges"]) == (4, 2, 2)
    assert counts["edges_total"] == 8
