"""Parameter roles: one table, read the same way by init, sparsity and the optimiser."""

import math

import pytest
import torch

from sparsecircuits.config import ModelConfig, RunConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.roles import PARAMETER_ROLES, parameter_role, table_name
from sparsecircuits.train.sparsity import sparse_parameters
from sparsecircuits.train.trainer import build_optimizer

# Every option that adds or removes a parameter, on and off.
CONFIGS = [
    ModelConfig(vocab_size=300, n_layer=2, d_model=32, n_ctx=16, positional="learned"),
    ModelConfig(vocab_size=300, n_layer=2, d_model=32, n_ctx=16, positional="none",
                attention_sink=False, bigram_table=False, kernels="dense"),
]  # fmt: skip


def _model(cfg: ModelConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_every_parameter_has_exactly_one_role(cfg):
    names = [name for name, _ in _model(cfg).named_parameters()]
    for name in names:
        assert table_name(name) in PARAMETER_ROLES, name
        parameter_role(name)  # no KeyError


def test_every_table_entry_names_a_parameter_some_model_has():
    seen = {table_name(n) for cfg in CONFIGS for n, _ in _model(cfg).named_parameters()}
    assert seen == set(PARAMETER_ROLES)


def test_a_parameter_the_table_does_not_declare_is_an_error_not_a_guess():
    with pytest.raises(KeyError, match="no role"):
        parameter_role("blocks.0.mlp.fc_output.weight")  # a renamed fc_out
    with pytest.raises(KeyError, match="no role"):
        parameter_role("blocks.01.mlp.fc_out.weight")  # not how torch names layer 1


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sparsity_reads_the_table(cfg):
    model = _model(cfg)
    sparse = {sp.name: sp.node_axes for sp in sparse_parameters(model)}
    expected = {
        name: parameter_role(name).node_axes
        for name, _ in model.named_parameters()
        if parameter_role(name).sparse
    }
    assert sparse == expected
    assert sparse["unembed.weight"] == (1,) and sparse["blocks.1.mlp.fc_out.weight"] == (0, 1)
    assert not any("norm" in n or "sink" in n or n == "bigram" for n in sparse)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_optimizer_decays_what_the_table_says(cfg):
    model = _model(cfg)
    opt = build_optimizer(model, RunConfig(model=cfg))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == parameter_role(name).weight_decay, name


@pytest.mark.parametrize("cfg", CONFIGS)
def test_init_follows_the_table(cfg):
    model = _model(cfg)
    std = 0.02
    for name, p in model.named_parameters():
        init = parameter_role(name).init
        if init == "zeros":
            assert torch.count_nonzero(p) == 0, name
        elif init == "as_built":
            built = 1.0 if name.endswith("norm.weight") else 0.0
            assert torch.all(p == built), name
        else:
            want = std if init == "normal" else std / math.sqrt(2 * cfg.n_layer)
            assert abs(p.detach().std().item() / want - 1) < 0.2, name


def _name_matching_init(model: GPT) -> None:
    """The initialiser before the role table (frozen reference): roles from name strings."""
    std = 0.02
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or name in ("bigram", "logits_bias") or "sink" in name:
            continue
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif name.endswith("out_proj.weight") or name.endswith("fc_out.weight"):
            torch.nn.init.normal_(p, std=std / math.sqrt(2 * model.cfg.n_layer))
        else:
            torch.nn.init.normal_(p, std=std)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_table_init_is_bit_identical_to_the_name_matching_one(cfg):
    model, reference = _model(cfg), _model(cfg)
    torch.manual_seed(11)
    model._init_weights()
    torch.manual_seed(11)
    _name_matching_init(reference)
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.equal(a, b), name
