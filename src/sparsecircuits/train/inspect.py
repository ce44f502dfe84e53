"""What `sparsecircuits eval` reports about a trained model.

- val loss (nats/token) on the checkpoint's own val split,
- nonzeros per sparse matrix against its target,
- dead MLP neurons (never nonzero over the evaluated tokens),
- residual-stream kurtosis per layer (the paper's measure of activation sparsity; a Gaussian
  has kurtosis 3, heavier tails mean a few channels carry most of the signal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.data.prepare import prepare_data
from sparsecircuits.data.shards import TokenShard, iter_eval_batches
from sparsecircuits.model.hooks import Recorder, match_locations
from sparsecircuits.train.sparsity import keep_count, sparse_parameters
from sparsecircuits.train.trainer import evaluate_loss


@dataclass(frozen=True)
class MatrixReport:
    name: str
    shape: tuple[int, ...]
    nonzeros: int
    target: int


@dataclass(frozen=True)
class ModelReport:
    val_loss: float
    """Mean next-token loss on the val split (nats/token)."""
    matrices: list[MatrixReport]
    """Per sparse matrix: nonzeros and the target keep count."""
    dead_neurons: dict[str, int]
    """Per MLP layer: neurons that never fired on the evaluated tokens."""
    neurons_per_layer: int
    kurtosis: list[float]
    """Residual-stream kurtosis before each block and after the last."""
    tokens: int
    """Number of tokens the activation statistics were computed on."""


def kurtosis(x: torch.Tensor) -> float:
    """Plain (non-excess) kurtosis of all entries: E[(x - mean)^4] / Var^2, in float64."""
    x = x.double().flatten()
    centred = x - x.mean()
    var = centred.pow(2).mean()
    return float(centred.pow(4).mean() / var.pow(2))


@torch.no_grad()
def inspect_model(loaded: Loaded, batches: int | None = None) -> ModelReport:
    cfg = loaded.config
    model = loaded.model
    device = next(model.parameters()).device
    data = prepare_data(cfg.data, cfg.model.vocab_size, tokenizer=loaded.tokenizer)
    val = TokenShard(data.shards["val"])
    if batches is not None:
        cfg = cfg.replace(**{"train.eval_batches": batches})
    val_loss = evaluate_loss(model, val, cfg, device)

    fraction = cfg.sparsity.weight_fraction
    matrices = [
        MatrixReport(sp.name, tuple(sp.param.shape), int(sp.param.count_nonzero()),
                     keep_count(sp.param.numel(), fraction))
        for sp in sparse_parameters(model)
    ]

    post_act = match_locations(model.locations, "*.mlp.post_act")
    fired = {loc: torch.zeros(model.cfg.d_mlp, dtype=torch.bool) for loc in post_act}
    streams: list[list[torch.Tensor]] = [[] for _ in range(cfg.model.n_layer + 1)]
    tokens = 0
    for batch in iter_eval_batches(val, cfg.train.batch_size, cfg.model.n_ctx, cfg.train.eval_batches):
        x = batch[:, :-1].to(device)
        rec = Recorder(post_act)
        model(x, hooks=rec.hooks)
        for loc in post_act:
            fired[loc] |= (rec.acts[loc] != 0).flatten(0, 1).any(0).cpu()
        for i, s in enumerate(model.residual_stream(x)):
            streams[i].append(s.flatten(0, 1).cpu())
        tokens += x.numel()
    return ModelReport(
        val_loss=val_loss,
        matrices=matrices,
        dead_neurons={loc: int((~f).sum()) for loc, f in fired.items()},
        neurons_per_layer=model.cfg.d_mlp,
        kurtosis=[kurtosis(torch.cat(s)) for s in streams],
        tokens=tokens,
    )
