"""AdamW on the support between regrowths: torch's AdamW restricted to the nonzeros."""

from __future__ import annotations

import torch
from torch import nn

from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import set_weight_gradient
from sparsecircuits.train.support_adamw import adamw_step, step_on_support_

HYPER = {"lr": 0.01, "betas": (0.9, 0.95), "eps": 1e-8}


def test_a_support_step_is_torch_adamw_on_the_support_and_leaves_the_rest_alone():
    torch.manual_seed(0)
    mask = torch.rand(6, 10) < 0.3
    w = nn.Parameter(torch.randn(6, 10))
    opt = torch.optim.AdamW([w], weight_decay=0.1, fused=True, **HYPER)
    w.grad = torch.randn_like(w)
    opt.step()  # a dense step: moments everywhere
    with torch.no_grad():
        w.mul_(mask)  # the projection
    state = opt.state[w]
    before = {k: v.clone() for k, v in state.items()} | {"w": w.detach().clone()}
    flat = mask.flatten().nonzero().squeeze(1)
    grad = torch.randn(6, 10) * mask

    ref = nn.Parameter(before["w"].flatten()[flat].clone())
    ref_opt = torch.optim.AdamW([ref], weight_decay=0.1, foreach=False, **HYPER)
    ref_opt.state[ref] = {"step": before["step"].clone(),
                          "exp_avg": before["exp_avg"].flatten()[flat].clone(),
                          "exp_avg_sq": before["exp_avg_sq"].flatten()[flat].clone()}  # fmt: skip
    ref.grad = grad.flatten()[flat]
    ref_opt.step()

    step_on_support_(opt, [(w, flat, grad)])
    torch.testing.assert_close(w.detach().flatten()[flat], ref.detach())
    torch.testing.assert_close(state["exp_avg"].flatten()[flat], ref_opt.state[ref]["exp_avg"])
    torch.testing.assert_close(state["exp_avg_sq"].flatten()[flat],
                               ref_opt.state[ref]["exp_avg_sq"])  # fmt: skip
    off = ~mask
    assert not w.detach()[off].any()
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key][off], before[key][off])
    assert float(state["step"]) == float(before["step"]) + 1


def test_between_regrowths_only_the_support_moves_and_other_parameters_step_as_usual(
    tiny_config,
):
    cfg = tiny_config.replace(**{"model.kernels": "sparse"})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    fc_in = model.blocks[0].mlp.fc_in
    with torch.no_grad():
        fc_in.weight.mul_(torch.rand_like(fc_in.weight) < 0.25)
    opt = torch.optim.AdamW(model.parameters(), fused=True, **HYPER)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 17))
    for dense in (True, False):  # a regrowth step (fills every moment), then a support step
        with torch.no_grad():
            fc_in.weight.mul_(fc_in.weight.abs() > 0.02)  # stand-in for the projection
        support = fc_in.weight.detach() != 0
        before = {"w": fc_in.weight.detach().clone(), "bigram": model.bigram.detach().clone()}
        if fc_in.weight in opt.state:
            before["m"] = opt.state[fc_in.weight]["exp_avg"].clone()
        set_weight_gradient(model, dense)
        opt.zero_grad(set_to_none=True)
        model(tokens).logsumexp(-1).mean().backward()
        adamw_step(opt, model, support_only=not dense)
        w = fc_in.weight.detach()
        assert not torch.equal(model.bigram.detach(), before["bigram"])
        if dense:
            assert w[~support].any()  # momentum reaches every entry on a dense step
        else:
            assert torch.equal(w[~support], before["w"][~support])  # still zero
            assert not torch.equal(w[support], before["w"][support])
            m = opt.state[fc_in.weight]["exp_avg"]
            assert torch.equal(m[~support], before["m"][~support])
            assert fc_in.weight.grad is not None  # given back after the step
