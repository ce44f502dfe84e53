"""Hyperparameter search over pruning runs with Optuna (the paper used CARBS, 256 runs each).

Each trial prunes the task with sampled k_coef, lr, init_noise_bias and heaviside_temp (the
rest of the config fixed) and scores the resulting circuit by its edge count (nodes break
ties); a trial that misses the target scores worse than any that reaches it. The best trial's
outcome is returned as is, so the chosen circuit is not re-trained. Defaults never need this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.pruner import PruneOutcome, Pruner
from sparsecircuits.circuits.task_data import TaskData
from sparsecircuits.errors import CircuitError

SEARCH_SPACE: dict[str, tuple[str, float, float]] = {
    "k_coef": ("log", 1e-5, 1e-3),
    "lr": ("log", 1e-3, 3e-2),
    "init_noise_bias": ("linear", 0.0, 0.3),
    "heaviside_temp": ("log", 0.1, 3.0),
}
"""name -> (scale, low, high) of every searched hyperparameter."""

UNREACHED_PENALTY = 1e9


def search_hyperparameters(
    pruner: Pruner,
    data: TaskData,
    n_trials: int,
    edges_of: Callable[[list[str]], int],
    seed: int = 0,
) -> tuple[PruneConfig, PruneOutcome, dict[str, Any]]:
    """(best config, its outcome, a summary of every trial) after `n_trials` Optuna trials.

    The first trial is the unchanged config, so the search can only improve on the defaults.
    """
    import optuna

    if n_trials < 1:
        raise CircuitError(f"--search needs at least 1 trial, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    base = pruner.cfg
    outcomes: dict[int, tuple[PruneConfig, PruneOutcome, int]] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for name, (scale, low, high) in SEARCH_SPACE.items():
            params[name] = trial.suggest_float(name, low, high, log=scale == "log")
        cfg = base.replace(**params)
        trial_pruner = Pruner(pruner.model, pruner.ablation, cfg, pruner.progress)
        outcome = trial_pruner.prune(data)
        edges = edges_of(outcome.nodes)
        outcomes[trial.number] = (cfg, outcome, edges)
        trial.set_user_attr("nodes", len(outcome.nodes))
        trial.set_user_attr("edges", edges)
        trial.set_user_attr("reached", outcome.reached)
        if not outcome.reached:
            return UNREACHED_PENALTY + outcome.search.best_loss
        return edges + len(outcome.nodes) / (pruner.layout.n_nodes + 1)

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({name: getattr(base, name) for name in SEARCH_SPACE})
    study.optimize(objective, n_trials=n_trials)
    best_cfg, best_outcome, _ = outcomes[study.best_trial.number]
    summary = {
        "method": "optuna TPE",
        "trials": n_trials,
        "space": {k: list(v) for k, v in SEARCH_SPACE.items()},
        "objective": "edges of the circuit at the target (nodes break ties)",
        "best": {name: getattr(best_cfg, name) for name in SEARCH_SPACE},
        "history": [{**t.params, **t.user_attrs, "value": t.value} for t in study.trials],
    }
    return best_cfg, best_outcome, summary
