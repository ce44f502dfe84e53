import torch

from sparsecircuits.circuits.ablation import MeanAblation, record_means
from sparsecircuits.circuits.forward import last_logits
from sparsecircuits.circuits.masks import MaskLayout, NodeMasks, heaviside, masked_hooks
from sparsecircuits.model.hooks import Recorder, compose
from sparsecircuits.tasks.metrics import task_loss
from tests.circuits.planted import planted_batch, planted_model, random_windows


def test_heaviside_is_a_step_forward_and_a_sigmoid_derivative_backward():
    tau = torch.tensor([-0.5, -1e-3, 0.0, 1e-3, 0.7], requires_grad=True)
    for temp in (1.0, 0.3):
        gates = heaviside(tau, temp)
        assert gates.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
        (grad,) = torch.autograd.grad((gates * torch.arange(5.0)).sum(), tau)
        ref = tau.detach().clone().requires_grad_(True)
        (want,) = torch.autograd.grad((torch.sigmoid(ref / temp) * torch.arange(5.0)).sum(), ref)
        assert torch.allclose(grad, want)


def test_layout_numbers_every_node_once_and_ties_q_with_k():
    model = planted_model()
    plain = MaskLayout.for_model(model)
    assert plain.n_units == plain.n_nodes == sum(model.location_width.values())
    tied = MaskLayout.for_model(model, tie_qk=True)
    assert tied.n_nodes == plain.n_nodes
    assert tied.n_units == plain.n_units - model.location_width["0.attn.k"]
    assert torch.equal(tied.unit_of["0.attn.q"], tied.unit_of["0.attn.k"])
    assert torch.equal(tied.unit_size[tied.unit_of["0.attn.q"]], torch.full((32,), 2.0))
    gates = tied.unit_gates_for_nodes(["0.attn.q.5"])
    assert tied.nodes(gates) == ["0.attn.q.5", "0.attn.k.5"]
    assert int(tied.kept_nodes(gates)) == 2


def test_all_on_is_the_full_model_and_all_off_sets_every_node_to_its_mean():
    model = planted_model()
    batch = planted_batch(8, 0)
    layout = MaskLayout.for_model(model)
    ablation = MeanAblation(record_means(model, random_windows()))
    means = ablation.values(8, batch.tokens.shape[1])
    full = last_logits(model, batch.tokens, batch.lengths)
    on = masked_hooks(layout, torch.ones(layout.n_units), means)
    assert on == {}  # nothing to do
    rec = Recorder(model.locations)
    off = masked_hooks(layout, torch.zeros(layout.n_units), means)
    ablated = last_logits(model, batch.tokens, batch.lengths, compose(off, rec.hooks))
    assert not torch.allclose(ablated, full)
    for loc, act in rec.acts.items():
        assert torch.allclose(act, means[loc].expand_as(act))


def test_mask_gradient_is_surrogate_times_attribution():
    """d loss / d tau_u = sigmoid'(tau_u) * sum over tokens of (x - mean) * d loss / d x."""
    model = planted_model()
    model.requires_grad_(False)
    batch = planted_batch(16, 0)
    layout = MaskLayout.for_model(model)
    ablation = MeanAblation(record_means(model, random_windows()))
    means = ablation.values(16, batch.tokens.shape[1])
    masks = NodeMasks(layout, 0.1, 0.01, temp=1.0, generator=torch.Generator().manual_seed(0))
    hooks, _ = masks.hooks(means)
    task_loss(last_logits(model, batch.tokens, batch.lengths, hooks), batch).backward()

    loc, idx = "0.mlp.post_act", 5
    leaf = {}

    def as_leaf(x):  # the activation as a leaf, to read d loss / d x
        leaf["x"] = x.detach().requires_grad_(True)
        return leaf["x"]

    task_loss(last_logits(model, batch.tokens, batch.lengths, {loc: as_leaf}), batch).backward()
    x = leaf["x"]
    attribution = ((x.detach() - means[loc]) * x.grad)[..., idx].sum()
    unit = layout.unit_of[loc][idx]
    s = torch.sigmoid(masks.tau.detach()[unit])
    assert torch.allclose(masks.tau.grad[unit], s * (1 - s) * attribution, rtol=1e-4, atol=1e-9)
    assert float(masks.tau.grad[unit]) < 0  # keeping this neuron lowers the loss
    inert = layout.unit_of["0.attn.v"][0]
    assert float(masks.tau.grad[inert]) == 0.0
