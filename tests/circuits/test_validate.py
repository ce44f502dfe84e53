import torch

from sparsecircuits.circuits.task_data import nonsense_task
from sparsecircuits.circuits.validate import shuffled_model
from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import project_, sparse_parameters
from tests.circuits.planted import planted_task


def test_shuffled_model_keeps_the_sparsity_pattern_and_values_but_moves_them():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_ctx=16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # biases and norms too, so nothing is trivially equal
    project_(sparse_parameters(model), 0.2, 2)
    shuffled = shuffled_model(model, seed=1)
    before, after = dict(model.named_parameters()), dict(shuffled.named_parameters())
    sparse = {sp.name for sp in sparse_parameters(model)}
    for name, p in before.items():
        q = after[name]
        if name in sparse:
            assert torch.equal(p != 0, q != 0), name
            assert torch.equal(p[p != 0].sort().values, q[q != 0].sort().values), name
            if (p != 0).sum() > 3:
                assert not torch.equal(p, q), name
        else:  # bigram table, norm gains, sinks: untouched
            assert torch.equal(p, q), name


def test_nonsense_task_asks_for_one_fixed_unrelated_token(tiny_loaded):
    data = planted_task(16, 8, 8)
    tok = tiny_loaded.tokenizer
    nonsense, token = nonsense_task(data, tok, seed=0)
    assert token not in data.task_tokens and token not in data.candidate_tokens
    assert tok.decode([token]).strip().isalpha()
    for real, fake in ((data.train, nonsense.train), (data.test, nonsense.test)):
        assert torch.equal(fake.tokens, real.tokens)
        assert bool((fake.correct_id == token).all())
        assert torch.equal(fake.wrong_id, real.correct_id)
    assert nonsense_task(data, tok, seed=0)[1] == token  # deterministic
