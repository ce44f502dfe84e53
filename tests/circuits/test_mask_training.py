import pytest
import torch

from sparsecircuits.circuits.ablation import MeanAblation, record_means
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.mask_training import bucketed_batches, train_masks
from sparsecircuits.circuits.masks import MaskLayout
from sparsecircuits.circuits.pruner import Pruner
from sparsecircuits.circuits.validate import sufficiency_necessity
from sparsecircuits.errors import CircuitError
from tests.circuits.planted import PLANTED, planted_model, planted_task, random_windows

# A higher LR than the default so that few steps suffice on this small problem.
FAST = PruneConfig(steps=50, lr=1e-2, batch_size=32, target_loss=0.1, eval_batch_size=64)


def _pruner(cfg: PruneConfig = FAST) -> Pruner:
    model = planted_model()
    return Pruner(model, MeanAblation(record_means(model, random_windows())), cfg)


@pytest.mark.slow
@pytest.mark.parametrize("tie_qk", [False, True])
def test_pruner_finds_exactly_the_planted_circuit(tie_qk):
    pruner = _pruner(FAST.replace(tie_qk=tie_qk))
    data = planted_task()
    out = pruner.prune(data)
    assert out.reached and out.nodes == PLANTED
    assert out.val_loss_before <= 0.1 and out.val_loss_after <= out.val_loss_before
    # Every planted node is needed: no 3-node circuit reaches the target.
    assert out.search.evaluations[3] > 0.1
    v = sufficiency_necessity(pruner, data, out.unit_gates, out.scale, out.shift)
    assert v["sufficiency"]["loss"] <= 0.1 and v["sufficiency"]["accuracy"] == 1.0
    assert v["necessity"]["loss"] > 2.0 and v["necessity"]["accuracy"] <= 0.6
    assert v["necessity_fraction"] > 0.9


def test_mask_training_is_seeded_and_keeps_tau_in_range():
    model = planted_model()
    ablation = MeanAblation(record_means(model, random_windows()))
    layout = MaskLayout.for_model(model)
    data = planted_task(64, 8, 8)
    cfg = FAST.replace(steps=5, lr=0.5)
    a = train_masks(model, layout, ablation, data.train, cfg)
    b = train_masks(model, layout, ablation, data.train, cfg)
    assert torch.equal(a.tau, b.tau)
    assert float(a.tau.abs().max()) <= 1.0 and float(a.tau.abs().max()) == 1.0
    assert len(a.task_loss) == 5 and all(p.requires_grad for p in model.parameters())


def test_penalty_alone_prunes_inert_nodes():
    pruner = _pruner(FAST.replace(steps=20, lr=0.03))
    layout = pruner.layout
    out = train_masks(
        pruner.model, layout, pruner.ablation, planted_task(64, 8, 8).train, pruner.cfg
    )
    assert out.kept_nodes[0] == layout.n_nodes and out.kept_nodes[-1] < layout.n_nodes / 10


def test_batches_cover_the_split_and_are_length_sorted_in_buckets():
    lengths = torch.randint(1, 50, (256,), generator=torch.Generator().manual_seed(0))
    stream = bucketed_batches(lengths, 32, torch.Generator().manual_seed(1))
    epoch = [next(stream) for _ in range(8)]
    assert sorted(torch.cat(epoch).tolist()) == list(range(256))
    assert all(torch.equal(lengths[b], lengths[b].sort().values) for b in epoch)


def test_a_target_the_full_model_cannot_reach_stops_before_training():
    pruner = _pruner(FAST.replace(target_loss=1e-9))
    with pytest.raises(CircuitError, match="above the target"):
        pruner.prune(planted_task(16, 8, 8))


@pytest.mark.slow
def test_search_on_k_is_minimal_for_a_target_set_from_the_models_own_losses(
    tiny_loaded, bracket_task
):
    """In a real (tiny) model: the chosen k reaches the target and k - 1 does not."""
    from sparsecircuits.circuits.ablation import ZeroAblation
    from sparsecircuits.circuits.task_data import load_task_data

    cfg = PruneConfig(steps=10, batch_size=16, target_loss=100.0)
    data = load_task_data(str(bracket_task), tiny_loaded.tokenizer, cfg, 64)
    model = tiny_loaded.model
    pruner = Pruner(model, ZeroAblation(model.location_width), cfg)
    full = pruner.loss(data.val, None)
    none = pruner.loss(data.val, torch.zeros(pruner.layout.n_units))
    target = full + 0.3 * (none - full) if none > full else (full + none) / 2
    pruner.cfg = cfg.replace(target_loss=target)
    out = pruner.prune(data)
    tau = out.training.tau
    k = out.search.k
    assert k is not None and pruner.loss(data.val, pruner.layout.top_units(tau, k)) <= target
    if k > 0:
        assert pruner.loss(data.val, pruner.layout.top_units(tau, k - 1)) > target


@pytest.mark.slow
def test_optuna_search_starts_from_the_defaults_and_returns_its_best_trial():
    from sparsecircuits.circuits.search import SEARCH_SPACE, search_hyperparameters

    pruner = _pruner(FAST.replace(steps=25))
    best_cfg, outcome, summary = search_hyperparameters(
        pruner, planted_task(64, 32, 8), n_trials=2, edges_of=len, seed=0
    )
    first = summary["history"][0]
    assert all(first[name] == getattr(pruner.cfg, name) for name in SEARCH_SPACE)
    assert len(summary["history"]) == 2
    reached = [t for t in summary["history"] if t["reached"]]
    if reached:
        assert outcome.reached and len(outcome.nodes) == min(t["edges"] for t in reached)
    assert best_cfg.steps == 25


@pytest.mark.slow
def test_one_mask_training_serves_every_target_as_a_fresh_prune_would():
    pruner = _pruner()
    data = planted_task()
    training = pruner.train_masks(data)
    loose = pruner.discretize(data, training, target=0.1)
    assert loose.nodes == pruner.prune(data).nodes == PLANTED
    # A target nothing reaches: the search reports a miss and the best k it tried.
    strict = pruner.discretize(data, training, target=1e-9)
    assert not strict.reached and strict.val_loss_before > 1e-9
