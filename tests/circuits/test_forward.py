import torch

from sparsecircuits.circuits.forward import batch_last_logits, last_logits
from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.model.hooks import set_nodes
from sparsecircuits.tasks.encoding import TaskBatch


def _batch():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 9, 5, 12, 1, 7])
    tokens = torch.randint(0, 300, (6, 12), generator=gen)
    ids = torch.zeros(6, dtype=torch.long)
    return TaskBatch(tokens, lengths, ids, ids + 1, ids)


def test_last_logits_equal_the_models_logits_at_length_minus_one():
    torch.manual_seed(0)
    for positional in ("none", "learned"):
        cfg = ModelConfig(vocab_size=300, n_layer=2, d_model=32, n_ctx=16, positional=positional)
        model = GPT(cfg).eval()
        with torch.no_grad():
            model.bigram.normal_()
        b = _batch()
        hooks = set_nodes({"1.mlp.post_act": {3: 2.0}})
        want = model(b.tokens, hooks)[torch.arange(6), b.lengths - 1]
        got = last_logits(model, b.tokens, b.lengths, hooks)
        assert torch.allclose(got, want, atol=1e-5)


def test_batched_evaluation_keeps_the_batch_order():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_layer=1, d_model=32, n_ctx=16)).eval()
    b = _batch()
    want = last_logits(model, b.tokens, b.lengths)
    got = batch_last_logits(model, b, None, chunk=4)
    assert torch.allclose(got, want, atol=1e-5)
