"""Training on the sparse kernels: exact gradients by default, support-only with regrowth."""

from __future__ import annotations

import json
import math

import torch

from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import dense_gradient_step, set_weight_gradient
from sparsecircuits.train.trainer import train


def test_regrow_schedule():
    assert [dense_gradient_step(s, 0) for s in range(3)] == [True, True, True]
    assert [dense_gradient_step(s, 3) for s in range(7)] == [True, False, False, True,
                                                             False, False, True]


def test_support_steps_leave_weights_off_the_support_at_zero_gradient(tiny_config):
    cfg = tiny_config.replace(**{"model.kernels": "sparse"})
    torch.manual_seed(0)
    model = GPT(cfg.model)
    with torch.no_grad():
        for block in model.blocks:
            w = block.mlp.fc_in.weight
            w.mul_(torch.rand_like(w) < 0.25)
    tokens = torch.randint(0, cfg.model.vocab_size, (2, 17))
    set_weight_gradient(model, dense=False)
    model(tokens).logsumexp(-1).mean().backward()
    fc_in = model.blocks[0].mlp.fc_in
    assert not fc_in.weight.grad[fc_in.weight == 0].any()
    assert fc_in.weight.grad[fc_in.weight != 0].any()
    model.zero_grad()
    set_weight_gradient(model, dense=True)
    model(tokens).logsumexp(-1).mean().backward()
    assert fc_in.weight.grad[fc_in.weight == 0].any()  # the dense gradient reaches every entry


def test_training_with_sparse_kernels_and_regrowth(tiny_config, tmp_path):
    cfg = tiny_config.replace(**{"model.kernels": "sparse", "sparsity.regrow_every": 4})
    result = train(cfg, tmp_path / "run", progress=False)
    assert math.isfinite(result.val_loss) and result.steps == cfg.train.steps
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert records[0]["loss"] > records[-1]["loss"]  # it learns
