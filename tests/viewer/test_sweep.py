"""The report's batched paths against the one-at-a-time ones the app uses.

`single_ablations` (grouped forwards, `sweep.score_edits`) must give the documents
`intervention_result` gives node by node; `node_panels` (one scan, one task forward) the
panels `node_panel` gives one by one.
"""

from __future__ import annotations

import pytest

from sparsecircuits.viewer.interventions import Intervention
from sparsecircuits.viewer.node_stats import StatsConfig
from sparsecircuits.viewer.panels import (
    intervention_result,
    node_panel,
    node_panels,
    single_ablations,
)
from sparsecircuits.viewer.workspace import Workspace


@pytest.fixture(scope="module")
def setup(artifacts, pruned, pruned_id):
    ws = Workspace(artifacts, StatsConfig(windows=8, top_k=4))
    circuit = ws.circuit(pruned_id)
    handle, _ = ws.circuit_model(circuit)
    return handle, circuit


def close(a, b, path=""):
    """Equal documents, numbers up to the last printed digit (rows batched differently)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=2e-3, abs=1e-6), path
    else:
        assert a == b, path


@pytest.mark.parametrize("mode", ["model", "circuit"])
def test_grouped_ablations_equal_one_at_a_time(setup, mode):
    handle, circuit = setup
    nodes = list(circuit.nodes)[:19]  # more than one group of 16 edits, and a partial one
    base = intervention_result(handle, circuit.task, [], 16, circuit, mode)["baseline"]
    grouped = single_ablations(handle, circuit.task, nodes, base, 16, circuit, mode)
    assert list(grouped) == nodes
    moved = 0
    for node in nodes:
        for op in ("ablate_mean", "ablate_zero"):
            one = intervention_result(handle, circuit.task, [Intervention(node, op)], 16,
                                      circuit, mode, base)
            close(grouped[node][op], one, f"{node} {op}")
            moved += one["intervened"]["task_loss"] != base["task_loss"]
    if mode == "model":  # the comparison saw real effects, not only baselines (in the tiny
        assert moved > 0  # model's circuit alone, an ablation may well change nothing)


@pytest.mark.parametrize("mode", ["model", "circuit"])
def test_grouped_ablations_start_at_every_part_of_every_layer(setup, mode):
    """A forward resumed at any layer's attention or MLP (the last MLP at the read position
    only) gives what the whole forward gives: a node at every location, circuit or not."""
    handle, circuit = setup
    model = handle.model
    nodes = [f"{loc}.{(7 * i) % width}" for i, (loc, width)
             in enumerate(model.location_width.items())]
    assert {loc.split(".")[1] for loc in model.location_width} == {"attn", "mlp"}
    base = intervention_result(handle, circuit.task, [], 16, circuit, mode)["baseline"]
    grouped = single_ablations(handle, circuit.task, nodes, base, 16, circuit, mode)
    moved = 0
    for node in nodes:
        for op in ("ablate_mean", "ablate_zero"):
            one = intervention_result(handle, circuit.task, [Intervention(node, op)], 16,
                                      circuit, mode, base)
            close(grouped[node][op], one, f"{node} {op}")
            moved += one["intervened"]["task_loss"] != base["task_loss"]
    if mode == "model":  # (most of these nodes are not in the tiny circuit: no effect there)
        assert moved > 0


def test_half_blocks_that_read_no_kept_node_are_reused_not_run(setup):
    """A circuit that keeps nodes of the first layer only: every later half-block reads
    ablated inputs, so its recorded output stands in for running it, with the same scores."""
    from sparsecircuits.viewer.interventions import circuit_hooks
    from sparsecircuits.viewer.sweep import fixed_circuit_parts, score_edits

    handle, circuit = setup
    model = handle.model
    means, _ = handle.means(circuit)
    kept = [f"0.{part}.{loc}.{i}" for part, loc in (("attn", "act_in"), ("mlp", "act_in"))
            for i in range(4)] + ["0.attn.v.3", "0.mlp.post_act.5"]
    fixed = fixed_circuit_parts(model, kept)
    assert fixed == {(layer, p) for layer in range(1, model.cfg.n_layer) for p in (0, 1)}
    base = circuit_hooks(model, kept, means)
    edits = [(loc, (5 * i) % width, value) for i, (loc, width)
             in enumerate(model.location_width.items()) for value in (0.0, 1.5)]
    batch, _ = handle.task_batch(circuit.task, 16)
    reused = score_edits(model, batch, edits, base, (1.2, 0.1), fixed_parts=fixed)
    run = score_edits(model, batch, edits, base, (1.2, 0.1))
    close(reused, run)
    assert any(r["task_loss"] != reused[0]["task_loss"] for r in reused)  # edits had effects


def test_batched_panels_equal_one_at_a_time(setup):
    handle, circuit = setup
    nodes = list(circuit.nodes)[:6]
    batched = node_panels(handle, nodes, circuit.task, 16, circuit)
    for node in nodes:
        close(batched[node], node_panel(handle, node, circuit.task, 16, circuit), node)


def test_a_forward_resumed_at_a_block_equals_the_whole_forward(setup):
    import torch

    from sparsecircuits.model.hooks import Recorder

    handle, _ = setup
    model = handle.model
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.vocab_size, (3, 20), generator=gen)
    rec = Recorder([f"{layer}.resid_pre" for layer in range(model.cfg.n_layer)])
    with torch.no_grad():
        whole = model(tokens, rec.hooks)
        for layer in range(1, model.cfg.n_layer):
            resumed = model(tokens, from_layer=layer, resid=rec.acts[f"{layer}.resid_pre"])
            assert torch.allclose(resumed, whole, atol=1e-5), layer
    with pytest.raises(ValueError):
        model(tokens, from_layer=1)  # a later start needs the stream entering it


def test_length_buckets_partition_the_rows_by_length():
    import torch

    from sparsecircuits.viewer.sweep import length_buckets

    lengths = torch.tensor([5, 30, 7, 22, 9, 41, 3, 18, 12, 26, 33, 8, 15, 2, 40, 11, 20])
    buckets = length_buckets(lengths, min_rows=4, most=3)
    assert len(buckets) == 3
    assert sorted(torch.cat(buckets).tolist()) == list(range(len(lengths)))
    for shorter, longer in zip(buckets, buckets[1:], strict=False):
        assert lengths[shorter].max() <= lengths[longer].min()
    assert len(length_buckets(lengths[:5], min_rows=8)) == 1  # too few rows to split
