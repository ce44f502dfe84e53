"""`circuit describe`: what a quote circuit's nodes do, on a circuit pruned here."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from typer.testing import CliRunner

from sparsecircuits.circuits.cli import register
from sparsecircuits.circuits.describe import attention_weights, auc, quote_sites, strength
from sparsecircuits.errors import TaskError
from sparsecircuits.model.hooks import Recorder

TASK = "single_double_quote"  # expressible in the tiny model's 512-token BPE
VERDICTS = {"found", "partly", "not found"}


def _invoke(*args):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def quote_circuit(tiny_run, tmp_path_factory):
    """A quote circuit of the tiny model, its target a third of the way from the full model to
    everything ablated (the tiny model cannot reach 0.15)."""
    from sparsecircuits.checkpoint import load_checkpoint
    from sparsecircuits.circuits.config import PruneConfig
    from sparsecircuits.circuits.pipeline import CircuitContext, find_circuit
    from sparsecircuits.circuits.pruner import Pruner
    from sparsecircuits.circuits.task_data import load_task_data

    loaded = load_checkpoint(tiny_run)
    cfg = PruneConfig(steps=30, batch_size=16, train_size=32, val_size=32, test_size=32,
                      mean_windows=8, target_loss=100.0)  # fmt: skip
    means = tmp_path_factory.mktemp("means")
    pruner = Pruner(loaded.model, CircuitContext(loaded, cfg, means).ablation(), cfg)
    data = load_task_data(TASK, loaded.tokenizer, cfg, loaded.config.model.n_ctx)
    full = pruner.loss(data.val, None)
    nothing = pruner.loss(data.val, torch.zeros(pruner.layout.n_units))
    assert nothing > full + 1e-3, "the tiny model no longer does better than its ablation"
    ctx = CircuitContext(loaded, cfg.replace(target_loss=full + (nothing - full) / 3), means)
    circuit, tensors = find_circuit(ctx, TASK, controls=False, baseline=False)
    return circuit.save(tmp_path_factory.mktemp("describe") / TASK, tensors)


def _in_unit_interval(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or 0.0 <= x <= 1.0


@pytest.mark.slow
def test_describe_prints_every_part_and_writes_consistent_json(quote_circuit, tmp_path):
    out = tmp_path / "describe.json"
    r = _invoke("circuit", "describe", quote_circuit, "--top", "4", "--json", out)
    assert r.exit_code == 0, r.output
    for part in ("1. nodes per location", "2. quote-type separation", "3. layer-0 MLP",
                 "4. heads with q/k", "5. verdicts", "(c) one head"):  # fmt: skip
        assert part in r.output, part
    doc = json.loads(out.read_text())
    circuit = json.loads(quote_circuit.read_text())
    s = doc["structure"]
    assert s["nodes"] == len(circuit["nodes"]) == sum(s["nodes_per_location"].values())
    assert s["edges"] == len(circuit["edges"]) == sum(s["edges_per_location_pair"].values())
    # every template example holds its opening quote; pairs make the two types equal in number
    assert doc["examples_with_quote"] == doc["examples"] == 96
    assert doc["single_quote_examples"] == 48
    assert all(('"' in t) or ("'" in t) for t in doc["opener_tokens"])
    for run in ("circuit_run", "full_model_run"):
        nodes = doc[run]["nodes"]
        assert set(nodes) == {n["name"] for n in circuit["nodes"]}
        for name, row in nodes.items():
            for key, value in row.items():
                values = value.values() if isinstance(value, dict) else [value]
                if "auc" in key or "strength" in key:
                    assert all(_in_unit_interval(v) for v in values), (run, name, key, value)
            if name.startswith("0.mlp.post_act."):
                assert set(row["open_vs_other_auc_by_token"]) == set(doc["opener_tokens"])
        for head in doc[run]["heads"]:
            for key in ("weight_to_open", "open_is_top", "sink_weight"):
                assert 0.0 <= head[key] <= 1.0, (run, head["head"], key)
            assert head["open_rank_mean"] >= 1.0 and head["lift_over_uniform"] >= 0.0
            assert head["q_nodes"] + head["k_nodes"] >= 1
            assert all(_in_unit_interval(v) for v in head["v_out_type_strength"].values())
        assert {v["verdict"] for v in doc[run]["verdicts"].values()} <= VERDICTS
        reach = doc[run]["type_at_read"]
        strong = [n for n, row in nodes.items() if row["type_strength_read"] >= 0.9]
        assert reach["strong_nodes"] == len(strong)
        assert set(reach["nodes_there"]) <= set(strong) and _in_unit_interval(reach["max_before"])
        assert (reach["first_location"] is None) == (not strong)
    # a node at layer 0 before any attention sees only its own token, and the two examples of
    # a pair share their last token: at the read position it cannot tell the quote type
    for name, row in doc["full_model_run"]["nodes"].items():
        if name.startswith("0.attn.act_in."):
            assert row["type_strength_read"] == 0.0, name  # pairs share their last token


@pytest.mark.slow
def test_a_task_without_quotes_is_a_one_line_error(quote_circuit, tmp_path):
    task = tmp_path / "brackets.jsonl"
    lines = [{"context": f"x = f({w}", "correct": ")", "wrong": "]"} for w in ("a", "b", "c")]
    task.write_text("".join(json.dumps(x) + "\n" for x in lines))
    r = _invoke("circuit", "describe", quote_circuit, "--task", task)
    assert isinstance(r.exception, TaskError), r.output
    assert "no example" in str(r.exception) and "\n" not in str(r.exception)


def test_quote_sites_are_the_last_quote_of_the_closing_type(tiny_loaded):
    from sparsecircuits.circuits.config import PruneConfig
    from sparsecircuits.circuits.task_data import load_task_data

    tok = tiny_loaded.tokenizer
    cfg = PruneConfig(train_size=16, val_size=16, test_size=16)
    batch = load_task_data(TASK, tok, cfg, tiny_loaded.config.model.n_ctx).test
    sites = quote_sites(batch, tok)
    assert len(sites.rows) == len(batch)
    for r, op, rd, single in zip(sites.rows, sites.opener, sites.read, sites.single, strict=True):
        quote = "'" if bool(single) else '"'
        assert quote in tok.decode([int(batch.correct_id[r])])  # the type the answer closes
        assert quote in tok.decode([int(batch.tokens[r, op])])
        assert int(rd) == int(batch.lengths[r]) - 1
        after = tok.decode(batch.tokens[r, op + 1 : rd + 1].tolist())
        assert '"' not in after and "'" not in after  # no later quote: it is the opener


def test_the_opening_quote_is_the_last_of_the_type_the_answer_closes(tiny_loaded):
    from sparsecircuits.tasks.base import TaskExample
    from sparsecircuits.tasks.encoding import encode_examples

    tok = tiny_loaded.tokenizer
    examples = [
        TaskExample("y = 'a' + f('alpha beta", "')", '")'),  # an earlier string
        TaskExample("y = f(\"it's alpha", '")', "')"),  # the other quote inside the string
    ]
    batch = encode_examples(examples, tok)
    sites = quote_sites(batch, tok)
    assert sites.single.tolist() == [True, False]
    for r, op in zip(sites.rows.tolist(), sites.opener.tolist(), strict=True):
        before = tok.decode(batch.tokens[r, :op].tolist())
        assert before in ("y = 'a' + f", "y = f"), before  # the quote token opens the string


@pytest.mark.parametrize("layer", [0, 1])
def test_attention_weights_reproduce_the_layers_output(tiny_loaded, layer):
    """Weights x v through out_proj and the output's AbsTopK give back what the model wrote."""
    model = tiny_loaded.model
    tokens = torch.tensor(tiny_loaded.tokenizer.encode('print("hello world", x)\n').ids)[None]
    names = [f"{layer}.attn.{p}" for p in ("q", "k", "v", "resid_delta")]
    rec = Recorder(names)
    with torch.no_grad():
        model(tokens, hooks=rec.hooks)
        q, k, v, written = (rec.acts[n] for n in names)
        w = attention_weights(model, layer, q, k)  # [1, H, T, T + 1]
        B, T, _ = q.shape
        attn = model.blocks[layer].attn
        assert torch.allclose(w.sum(-1), torch.ones(B, attn.n_heads, T), atol=1e-5)
        assert bool((w[..., :T].triu(1) == 0).all())  # causal
        heads = w[..., :T] @ v.view(B, T, attn.n_heads, attn.d_head).transpose(1, 2)
        heads = heads.transpose(1, 2).reshape(B, T, -1)
        again = attn.sites["resid_delta"](attn.out_proj(heads), None)
    assert torch.allclose(again, written, atol=1e-4), (again - written).abs().max()


def test_auc_is_the_share_of_ordered_pairs():
    assert auc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 0.0])) == 1.0
    assert auc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == 0.0
    assert auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, generator=g).round(), torch.randn(5, generator=g).round()
    pairs = [(x > y) + 0.5 * (x == y) for x in a.tolist() for y in b.tolist()]
    assert math.isclose(auc(a, b), sum(pairs) / len(pairs))
    assert math.isnan(auc(a, torch.tensor([])))
    assert strength(0.0) == strength(1.0) == 1.0 and strength(0.5) == 0.0
