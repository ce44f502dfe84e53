"""SAE-feature circuits: the spliced forward, its ablations, pruning over latents, edges."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecircuits.circuits.ablation import MeanAblation, PretrainingWindows, ZeroAblation
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.forward import last_logits
from sparsecircuits.circuits.pruner import Pruner
from sparsecircuits.circuits.task_data import load_task_data
from sparsecircuits.circuits.validate import sufficiency_necessity
from sparsecircuits.errors import SAEError
from sparsecircuits.sae.circuit import (
    SAEMaskLayout,
    circuit_edges,
    error_location,
    latent_location,
    record_sae_means,
    sae_ablation,
)
from sparsecircuits.sae.model import TopKSAE

POINTS = ("0.resid_post", "1.resid_mid")
SMALL = PruneConfig(loss="two_way", steps=4, train_size=32, val_size=16, test_size=16,
                    mean_windows=4, batch_size=16, target_loss=10.0)  # fmt: skip


def random_sae(d_in: int, seed: int) -> TopKSAE:
    """An untrained SAE: the splicing math holds for any weights."""
    sae = TopKSAE(d_in, 4 * d_in, 4)
    sae.initialize(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return sae.eval()


@pytest.fixture(scope="module")
def saes(tiny_loaded):
    d = tiny_loaded.model.cfg.d_model
    return {p: random_sae(d, i) for i, p in enumerate(POINTS)}


@pytest.fixture(scope="module")
def windows(tiny_loaded):
    return PretrainingWindows(tiny_loaded, 4).get()


def test_layout_orders_points_and_counts_error_units(tiny_loaded, saes):
    layout = SAEMaskLayout(tiny_loaded.model, dict(reversed(saes.items())))
    assert layout.points == list(POINTS)  # model order, whatever the mapping's order
    d_sae = saes[POINTS[0]].d_sae
    assert layout.n_units == 2 * (d_sae + 1)
    kept = SAEMaskLayout(tiny_loaded.model, saes, errors="kept")
    assert kept.n_units == 2 * d_sae


def test_layout_refuses_unknown_point_and_wrong_width(tiny_loaded, saes):
    with pytest.raises(SAEError, match="no hook point"):
        SAEMaskLayout(tiny_loaded.model, {"9.resid_post": saes[POINTS[0]]})
    wide = TopKSAE(tiny_loaded.model.cfg.d_model + 1, 64, 4)
    with pytest.raises(SAEError, match="wide"):
        SAEMaskLayout(tiny_loaded.model, {POINTS[0]: wide})
    with pytest.raises(SAEError, match="error-term mode"):
        SAEMaskLayout(tiny_loaded.model, saes, errors="dropped")


def test_all_gates_on_is_the_model(tiny_loaded, saes, windows):
    model = tiny_loaded.model
    layout = SAEMaskLayout(model, saes)
    ablation = MeanAblation(record_sae_means(model, layout, windows))
    tokens = windows[:2, :20]
    gates = torch.ones(layout.n_units, requires_grad=True)  # forces the hooks to run
    hooks = layout.hooks(gates, ablation.values(2, 20))
    assert set(hooks) == set(POINTS)
    with torch.no_grad():
        spliced = model(tokens, hooks)
        plain = model(tokens)
    assert torch.allclose(spliced, plain, atol=1e-4)
    assert layout.hooks(torch.ones(layout.n_units), ablation.values(2, 20)) == {}


def test_gates_off_replace_latents_and_error(tiny_loaded, saes):
    model = tiny_loaded.model
    layout = SAEMaskLayout(model, saes)
    point, sae = POINTS[0], saes[POINTS[0]]
    x = torch.randn(2, 5, sae.d_in, generator=torch.Generator().manual_seed(0))
    zero = sae_ablation("zero", model, layout, None)
    off = layout.hooks(torch.zeros(layout.n_units), zero.values(2, 5))
    assert torch.allclose(off[point](x), sae.b_dec.expand_as(x))  # decode(0) + 0
    # latents off, error on: the error term passes, the latents become their ablation value
    gates = torch.zeros(layout.n_units)
    gates[layout.unit_of[error_location(point)]] = 1.0
    a_z = torch.rand(sae.d_sae, generator=torch.Generator().manual_seed(1))
    reps = {**zero.values(2, 5), latent_location(point): a_z}
    got = layout.hooks(gates, reps)[point](x)
    expected = sae.decode(a_z).expand_as(x) + (x - sae(x))
    assert torch.allclose(got, expected, atol=1e-5)


def test_kept_errors_are_never_ablated(tiny_loaded, saes):
    model = tiny_loaded.model
    layout = SAEMaskLayout(model, saes, errors="kept")
    sae, point = saes[POINTS[1]], POINTS[1]
    x = torch.randn(1, 3, sae.d_in, generator=torch.Generator().manual_seed(2))
    reps = ZeroAblation({loc: layout.widths[loc] for loc in layout.locations}).values(1, 3)
    got = layout.hooks(torch.zeros(layout.n_units), reps)[point](x)
    assert torch.allclose(got, sae.b_dec + (x - sae(x)), atol=1e-5)


def test_means_are_the_latent_and_error_averages(tiny_loaded, saes, windows):
    model = tiny_loaded.model
    layout = SAEMaskLayout(model, saes)
    means = record_sae_means(model, layout, windows)
    from sparsecircuits.sae.activations import record_windows

    x = record_windows(model, windows, POINTS[1])  # [n * seq, d_in]
    sae = saes[POINTS[1]]
    with torch.no_grad():
        z = sae.encode(x)
        err = x - sae.decode(z)
    assert torch.allclose(means[latent_location(POINTS[1])], z.mean(0), atol=1e-5)
    assert torch.allclose(means[error_location(POINTS[1])], err.mean(0), atol=1e-5)
    assert means[error_location(POINTS[1])].shape == (sae.d_in,)


@pytest.fixture(scope="module")
def pruned(tiny_loaded, saes, windows):
    model = tiny_loaded.model
    layout = SAEMaskLayout(model, saes)
    ablation = sae_ablation("mean", model, layout, windows)
    data = load_task_data("single_double_quote", tiny_loaded.tokenizer, SMALL, model.cfg.n_ctx)
    probe = Pruner(model, ablation, SMALL, layout=layout)
    full, nothing = probe.loss(data.val, None), probe.loss(data.val, torch.zeros(layout.n_units))
    # halfway between the whole model and nothing kept: the circuit must keep some units
    pruner = Pruner(model, ablation, SMALL.replace(target_loss=(full + nothing) / 2),
                    layout=layout)  # fmt: skip
    return pruner, data, pruner.prune(data, require_reachable=False)


def test_pruner_prunes_latents_with_the_same_machinery(pruned):
    pruner, data, out = pruned
    layout = pruner.layout
    assert len(out.training.task_loss) == SMALL.steps
    assert len(out.nodes) == int(out.unit_gates.sum()) >= 1
    assert all(n.rsplit(".", 2)[0] in layout.points for n in out.nodes)
    v = sufficiency_necessity(pruner, data, out.unit_gates, out.scale, out.shift)
    full = pruner.metrics(data.test, None)["loss"]
    assert v["full_model"]["loss"] == pytest.approx(full)
    assert all(math.isfinite(v[k]["loss"]) for k in ("sufficiency", "necessity", "all_ablated"))


def test_edges_link_only_kept_units_of_consecutive_points(pruned):
    pruner, data, _ = pruned
    layout = pruner.layout
    gates = torch.zeros(layout.n_units)
    up = layout.unit_of[latent_location(POINTS[0])][:6]
    down = layout.unit_of[latent_location(POINTS[1])][:5]
    gates[up] = 1.0
    gates[down] = 1.0
    gates[layout.unit_of[error_location(POINTS[1])]] = 1.0
    edges = circuit_edges(pruner.model, layout, pruner.ablation, gates, data.test)
    assert edges.pairs == 6 * (5 + 1)
    for u, d, _ in edges.weights:
        assert u.startswith(latent_location(POINTS[0]) + ".")
        assert d.startswith(POINTS[1] + ".")
    assert edges.above <= edges.nonzero <= edges.pairs


def test_edge_weight_matches_finite_difference(pruned):
    """w(u -> d) is d/ds of sum(dm/dd . d) for a scale s on (u - a_u): check one pair."""
    pruner, data, _ = pruned
    model, layout, ablation = pruner.model, pruner.layout, pruner.ablation
    gates = torch.ones(layout.n_units)
    batch = data.test.select(torch.arange(4))
    edges = circuit_edges(model, layout, ablation, gates, batch)
    (u, d, w) = max(edges.weights, key=lambda e: abs(e[2]))
    assert w != 0.0
    u_loc, u_idx = u.rsplit(".", 1)
    d_loc, d_idx = d.rsplit(".", 1)
    reps = ablation.values(len(batch), batch.tokens.shape[1])

    def run(scale_u: float) -> tuple[torch.Tensor, torch.Tensor]:
        scales = {loc: torch.ones(layout.widths[loc]) for loc in layout.locations}
        scales[u_loc][int(u_idx)] = scale_u
        store: dict[str, torch.Tensor] = {}
        probe = torch.ones(layout.n_units, requires_grad=True)
        hooks = layout.probe_hooks(probe, reps, scales, store)
        metric = pruner.loss_fn(last_logits(model, batch.tokens, batch.lengths, hooks), batch,
                                reduction="sum")  # fmt: skip
        value = store[d_loc] if d_loc.endswith("sae_error") else store[d_loc][..., int(d_idx)]
        return metric, value

    metric, value = run(1.0)
    (grad,) = torch.autograd.grad(metric, value)
    eps = 1e-2
    with torch.no_grad():
        plus = (grad * run(1 + eps)[1]).sum()
        minus = (grad * run(1 - eps)[1]).sum()
    finite = float(plus - minus) / (2 * eps) / len(batch)
    assert finite == pytest.approx(w, rel=0.1, abs=1e-4 * abs(w) + 1e-6)
