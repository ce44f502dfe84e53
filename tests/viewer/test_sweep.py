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


def _strongest_nodes(model, batch, per_location: int = 1) -> list[str]:
    """Nodes chosen from the data: at every location, the ones with the largest mean |value|
    over the task's read positions (an ablation of them moves the numbers)."""
    import torch

    from sparsecircuits.model.hooks import Recorder

    rec = Recorder(model.locations)
    with torch.no_grad():
        model(batch.tokens, rec.hooks)
    rows = torch.arange(len(batch))
    nodes = []
    for loc, acts in rec.acts.items():
        strength = acts[rows, batch.lengths - 1].abs().mean(0)  # [width]
        nodes += [f"{loc}.{i}" for i in strength.topk(per_location).indices.tolist()]
    return nodes


@pytest.mark.parametrize("mode", ["model", "circuit"])
def test_packed_sweep_equals_plain_forwards_on_nodes_from_the_data(setup, mode):
    """The sweep (shared prefixes packed, the last block at the read position, attention
    written out) against a plain forward of the whole batch with the node set through the
    model's own hooks, on the nodes the task's activations make strongest."""
    from sparsecircuits.model.hooks import compose, set_nodes
    from sparsecircuits.model.locations import parse_node
    from sparsecircuits.viewer.interventions import circuit_hooks, score
    from sparsecircuits.viewer.packing import pack
    from sparsecircuits.viewer.sweep import fixed_circuit_parts, score_edits

    handle, circuit = setup
    model = handle.model
    batch, _ = handle.task_batch(circuit.task, 16)
    packed_rows = sum(len(pk.queries) for pk in pack(batch.tokens, batch.lengths))
    assert packed_rows < len(batch), "the task's pairs were not packed: nothing tested here"
    means, _ = handle.means(circuit)
    nodes = _strongest_nodes(model, batch)
    base = calibration = None
    fixed = set()
    if mode == "circuit":
        # A circuit of the strongest 3 nodes at every location but the last attention's input
        # (so that half-block is reused, not run: `fixed_parts`); the pruned tiny circuit is
        # too small for its ablations to move the numbers.
        final_input = f"{model.cfg.n_layer - 1}.attn.act_in"
        kept = [node for node in _strongest_nodes(model, batch, 3)
                if not node.startswith(final_input + ".")]
        base, calibration = circuit_hooks(model, kept, means), (1.2, 0.1)
        fixed = fixed_circuit_parts(model, kept)
        assert (model.cfg.n_layer - 1, 0) in fixed
    edits = []
    for node in nodes:
        loc, i = parse_node(node)
        edits += [(loc, i, float(means[loc][i])), (loc, i, 0.0), (loc, i, 3.0)]
    swept = score_edits(model, batch, edits, base, calibration, group=5, fixed_parts=fixed)
    unedited = score(model, batch, base, calibration)["task_loss"]
    moved = 0
    for (loc, i, value), fast in zip(edits, swept, strict=True):
        plain = score(model, batch, compose(base, set_nodes({loc: {i: value}})), calibration)
        close(fast, plain, f"{loc}.{i}={value}")
        moved += plain["task_loss"] != unedited
    assert moved > len(edits) // 3  # real effects were compared, not one number over and over


def test_packing_gives_every_row_exactly_its_own_positions():
    """Each real packed position sees the positions of its own row up to itself, once each,
    and each row is read at its last token."""
    import torch

    from sparsecircuits.viewer.packing import pack

    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(3, 50, (30,), generator=gen)
    rows, lengths = [], []
    for n, (shared, total) in enumerate([(12, 20), (12, 17), (0, 9), (25, 30), (25, 30),
                                         (25, 28), (5, 5), (3, 26), (20, 20)]):
        row = torch.cat([prefix[:shared], torch.randint(3, 50, (total - shared,), generator=gen)])
        if n == 8:
            row = prefix[:20].clone()  # a row that is all prefix of the rows sharing 25
        rows.append(torch.nn.functional.pad(row, (0, 30 - total)))
        lengths.append(total)
    tokens, lengths = torch.stack(rows), torch.tensor(lengths)
    packings = pack(tokens, lengths, most=2)
    assert sorted(torch.cat([pk.rows for pk in packings]).tolist()) == list(range(9))
    together = {r: (id(pk), int(pk.order[i]) // pk.queries.shape[1])
                for pk in packings for i, r in enumerate(pk.rows.tolist())}
    assert together[3] == together[4] == together[5]  # 25 of their 28-30 tokens shared
    assert len(set(together.values())) < 9
    for pk in packings:
        row, pos = pk.source
        seen = pk.bias[:, 0] == 0  # [G, Tp, Tp]
        for i, r in enumerate(pk.rows.tolist()):
            g, m = divmod(int(pk.order[i]), pk.queries.shape[1])
            read = int(pk.queries[g, m])
            assert int(pos[g, read]) == lengths[r] - 1
            for q in seen[g, read].nonzero().flatten().tolist():  # and each position it sees
                keys = seen[g, q].nonzero().flatten()
                at = pos[g, keys]  # positions in the row: 0..pos[q], each once, its tokens
                assert torch.equal(at.sort().values, torch.arange(int(pos[g, q]) + 1))
                assert torch.equal(tokens[row[g, keys], at], tokens[r, at])
