"""A hand-built GPT with a known circuit, and the synthetic task it solves.

Task: the context ends with token A or B; the answer is X after A and Y after B.
Circuit (layer 0 MLP, everything else zero): the embedding puts +1 (A) / -1 (B) on residual
channel C_IN; neuron N_POS fires for A and N_NEG for B (fc_in = +1 / -1 from C_IN); both write
to channel C_OUT with opposite signs (fc_out = +1 / -1); the unembedding reads C_OUT (+X / -Y).
So the circuit is exactly 4 nodes, 0.mlp.act_in.C_IN, 0.mlp.post_act.{N_POS, N_NEG} and
0.mlp.resid_delta.C_OUT, and 4 edges; every other node is inert.
"""

from __future__ import annotations

import torch

from sparsecircuits.circuits.task_data import TaskData
from sparsecircuits.config import ModelConfig
from sparsecircuits.model.gpt import GPT
from sparsecircuits.tasks.encoding import TaskBatch

A, B, X, Y = 10, 11, 50, 51
C_IN, C_OUT, N_POS, N_NEG = 3, 7, 5, 9
FILLER = (20, 100)
CFG = ModelConfig(vocab_size=300, n_layer=1, d_model=32, d_head=16, n_ctx=16)
PLANTED = [
    f"0.mlp.act_in.{C_IN}",
    f"0.mlp.post_act.{N_POS}",
    f"0.mlp.post_act.{N_NEG}",
    f"0.mlp.resid_delta.{C_OUT}",
]


@torch.no_grad()
def planted_model(unembed_scale: float = 1.7) -> GPT:
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    for name, p in model.named_parameters():
        if not name.endswith("norm.weight"):
            p.zero_()
    # Filler tokens live on channels the circuit never reads, so they are inert.
    lo, hi = FILLER
    model.embed.weight[lo:hi, 12:] = torch.randn(hi - lo, CFG.d_model - 12)
    model.embed.weight[A, C_IN], model.embed.weight[B, C_IN] = 1.0, -1.0
    fc_in, fc_out = model.blocks[0].mlp.fc_in.weight, model.blocks[0].mlp.fc_out.weight
    fc_in[N_POS, C_IN], fc_in[N_NEG, C_IN] = 1.0, -1.0
    fc_out[C_OUT, N_POS], fc_out[C_OUT, N_NEG] = 1.0, -1.0
    model.unembed.weight[X, C_OUT], model.unembed.weight[Y, C_OUT] = unembed_scale, -unembed_scale
    return model


def planted_batch(n: int, seed: int) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, CFG.n_ctx + 1, (n,), generator=gen)
    tokens = torch.randint(*FILLER, (n, CFG.n_ctx), generator=gen)
    label = torch.arange(n) % 2
    tokens[torch.arange(n), lengths - 1] = torch.where(label == 0, A, B)
    t_max = int(lengths.max())
    correct = torch.where(label == 0, X, Y)
    wrong = torch.where(label == 0, Y, X)
    return TaskBatch(tokens[:, :t_max], lengths, correct, wrong, label)


def planted_task(n_train: int = 128, n_val: int = 64, n_test: int = 64) -> TaskData:
    lo, hi = FILLER
    return TaskData(
        "planted",
        "A -> X, B -> Y",
        planted_batch(n_train, 0),
        planted_batch(n_val, 1),
        planted_batch(n_test, 2),
        (A, B, *range(lo, hi)),
        (X, Y),
    )


def random_windows(n: int = 16, seed: int = 3) -> torch.Tensor:
    """Pretraining-like windows [n, n_ctx]: filler with A and B sprinkled in."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randint(*FILLER, (n, CFG.n_ctx), generator=gen)
    spots = torch.rand(n, CFG.n_ctx, generator=gen)
    w[spots < 0.05] = A
    w[(spots >= 0.05) & (spots < 0.1)] = B
    return w
