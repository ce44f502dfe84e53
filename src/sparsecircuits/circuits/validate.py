"""Is the circuit sufficient, is it necessary, and would the pruner fool us? (docs/method.md §6)

- sufficiency: the circuit alone (every other node ablated), calibrated, on the test split;
  `sufficient` says whether that calibrated test loss is within the target;
- necessity: the full model with only the circuit's nodes ablated, on test. It is put in
  scale by `necessity_fraction` = (loss_necessity - loss_full) / (loss_all_ablated - loss_full):
  the share of the way from the full model to a model with every node ablated (which can only
  use the bigram table, the biases and the direct embedding path) that removing the circuit
  goes;
- controls: the same pruning (a) of the same task in a model with the same sparsity pattern
  but re-randomised weights (the nonzero values of every sparse matrix shuffled among its
  nonzero positions; the dense bigram table, norm gains and sinks kept), and (b) of a nonsense
  task (the task's contexts, 'correct' = a fixed unrelated token) in the real model. If the
  pruner can make either of these reach the target with a circuit as small as the real one, the
  circuit says more about the pruner than about the model.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from sparsecircuits.circuits.ablation import PretrainingWindows, build_ablation
from sparsecircuits.circuits.graph import circuit_graph
from sparsecircuits.circuits.pruner import PruneOutcome, Pruner
from sparsecircuits.circuits.task_data import TaskData, nonsense_task
from sparsecircuits.model.gpt import GPT
from sparsecircuits.train.sparsity import sparse_parameters


def sufficiency_necessity(
    pruner: Pruner, data: TaskData, gates: Tensor, scale: float, shift: float
) -> dict[str, Any]:
    """Test-split losses of the full model, the circuit alone, and the model without it."""
    full = pruner.metrics(data.test, None)
    alone = pruner.metrics(data.test, gates, scale, shift)
    alone_raw = pruner.metrics(data.test, gates)
    without = pruner.metrics(data.test, 1.0 - gates)
    nothing = pruner.metrics(data.test, torch.zeros_like(gates))
    gap = nothing["loss"] - full["loss"]
    fraction = (without["loss"] - full["loss"]) / gap if gap > 1e-6 else math.nan
    return {
        "full_model": full,
        "sufficiency": alone,
        "sufficiency_uncalibrated": alone_raw,
        "necessity": without,
        "all_ablated": nothing,
        "necessity_fraction": fraction,
        "sufficient": alone["loss"] <= pruner.cfg.target_loss,
    }


@torch.no_grad()
def shuffled_model(model: GPT, seed: int = 0) -> GPT:
    """A copy whose sparse matrices keep their zero pattern but shuffle their nonzero values."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for sp in sparse_parameters(out):
        w = sp.param.data
        nz = w != 0
        values = w[nz]
        w[nz] = values[torch.randperm(values.numel(), generator=gen).to(values.device)]
    return out


def control_summary(
    outcome: PruneOutcome, data: TaskData, model: GPT, name: str, description: str
) -> dict[str, Any]:
    """One control's row: did pruning reach the target, with how many nodes and edges."""
    state = {k: v for k, v in model.state_dict().items()}
    graph = circuit_graph(
        state, model.cfg.n_layer, outcome.nodes, data.task_tokens, data.candidate_tokens, data.seq
    )
    s = outcome.search
    return {
        "name": name,
        "description": description,
        "full_model_val_loss": outcome.full_val_loss,
        "reached_target": s.reached,
        "nodes": len(outcome.nodes),
        "edges": graph.counts()["edges"],
        "val_loss": outcome.val_loss_before,
        "val_loss_calibrated": outcome.val_loss_after,
        "best_val_loss": s.best_loss,
        "final_train_task_loss": outcome.training.task_loss[-1],
        "seconds": outcome.seconds.get("total"),
    }


def control_random_weights(
    model: GPT, windows: PretrainingWindows | None, data: TaskData, pruner: Pruner, seed: int = 0
) -> dict[str, Any]:
    """Prune the task in a re-randomised copy of the model (its own ablation statistics)."""
    shuffled = shuffled_model(model, seed)
    ablation = build_ablation(pruner.cfg.ablation, shuffled, windows, data.seq)
    control = Pruner(shuffled, ablation, pruner.cfg, pruner.progress)
    outcome = control.prune(data, require_reachable=False)
    return control_summary(
        outcome,
        data,
        shuffled,
        "random_weights",
        "same task, same sparsity pattern, nonzero weights shuffled within each matrix",
    )


def control_nonsense_task(
    pruner: Pruner, data: TaskData, tokenizer: Tokenizer, seed: int = 0
) -> dict[str, Any]:
    """Prune a nonsense version of the task (fixed unrelated answer) in the real model."""
    nonsense, token = nonsense_task(data, tokenizer, seed)
    outcome = pruner.prune(nonsense, require_reachable=False)
    row = control_summary(outcome, nonsense, pruner.model, "nonsense_task", nonsense.description)
    row["token"] = {"id": token, "text": tokenizer.decode([token])}
    return row
