"""Circuit size (edges) per task and target loss, for one model: the y-axis of Figures 2 and 3.

The mask optimisation does not depend on the target loss (it minimises task loss plus a
penalty per kept node), so each task's masks are trained once and the search on k is run
once per target over the same scores: three targets cost little more than one. Every circuit
is calibrated on train and its test loss recorded, as `prune` does; the controls and the
attribution baseline are left to `prune --task` (they do not change the size).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from sparsecircuits.checkpoint import Loaded
from sparsecircuits.circuits.config import PruneConfig
from sparsecircuits.circuits.pipeline import CircuitContext, geometric_mean
from sparsecircuits.circuits.pruner import Pruner
from sparsecircuits.circuits.task_data import TaskData, load_task_data
from sparsecircuits.errors import TaskError
from sparsecircuits.fileformat import write_json
from sparsecircuits.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SizePoint:
    """One task pruned to one target in one model."""

    task: str
    target: float
    reached: bool
    """Whether some circuit's val loss reached the target (else: sizes of the best k tried)."""
    nodes: int
    edges: int
    val_loss: float
    """Val loss of the circuit before calibration (what the target is checked against)."""
    test_loss: float
    """Test loss of the calibrated circuit."""
    test_accuracy: float


def load_tasks(
    tasks: list[Task], loaded: Loaded, cfg: PruneConfig
) -> tuple[dict[str, TaskData], dict[str, str]]:
    """Encoded splits per task name, and an error per task the tokenizer cannot express.

    Models trained on the same data share a tokenizer, so one call serves them all."""
    data, errors = {}, {}
    for task in tasks:
        try:
            data[task.name] = load_task_data(task, loaded.tokenizer, cfg, loaded.model.cfg.n_ctx)
        except TaskError as exc:
            errors[task.name] = str(exc)
    return data, errors


class CircuitSizer:
    """Prunes tasks in one model (one ablation, one mask layout) and measures the circuits."""

    def __init__(self, loaded: Loaded, cfg: PruneConfig, cache_dir: Path | None = None,
                 progress: bool = False):  # fmt: skip
        self.ctx = CircuitContext(loaded, cfg, cache_dir)
        self.pruner = Pruner(loaded.model, self.ctx.ablation(), cfg, progress)
        self._full: dict[str, float] = {}

    def full_loss(self, data: TaskData) -> float:
        """The whole model's val loss on the task (the loss the pruning config names)."""
        if data.name not in self._full:  # asked when choosing tasks, again when pruning
            self._full[data.name] = self.pruner.loss(data.val, None)
        return self._full[data.name]

    def sizes(
        self, data: TaskData, targets: list[float], cache_dir: Path | None = None
    ) -> list[SizePoint]:
        """One mask training, then the smallest circuit for each target.

        With `cache_dir`, the points are also written to `<cache_dir>/<task>.json` with what
        they depend on (weights hash, pruning config, targets, split sizes), and read back
        instead of pruning again when all of that matches and the cached targets include the
        asked ones (the targets only choose where to cut one mask training): re-running an
        experiment with another plot, fewer targets or an extra task does not redo the pruning
        it has already done.
        """
        key = {"content_hash": self.ctx.hash, "prune": self.pruner.cfg.to_dict(),
               "targets": list(targets), "task": data.name, "sizes": data.sizes}  # fmt: skip
        cache = cache_dir / f"{data.name}.json" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                doc = json.loads(cache.read_text())
                cached = {p["target"]: SizePoint(**p) for p in doc["points"]}
                if {**doc["key"], "targets": key["targets"]} == key and set(targets) <= set(cached):
                    return [cached[t] for t in targets]
            except (OSError, ValueError, TypeError, KeyError):
                pass  # unreadable or stale: prune again and overwrite it
        points = self._prune(data, targets)
        if cache is not None:
            write_json(cache, {"key": key, "points": point_dicts(points)})
        return points

    def _prune(self, data: TaskData, targets: list[float]) -> list[SizePoint]:
        pruner = self.pruner
        full = self.full_loss(data)
        training = pruner.train_masks(data)
        points = []
        for target in targets:
            out = pruner.discretize(data, training, target, full)
            test = pruner.metrics(data.test, out.unit_gates, out.scale, out.shift)
            edges = len(self.ctx.graph(out.nodes, data).edges)
            points.append(
                SizePoint(data.name, target, out.reached, len(out.nodes), edges,
                          out.val_loss_before, test["loss"], test["accuracy"])
            )  # fmt: skip
            log.info("%s target %g: %d nodes, %d edges, val %.3f%s", data.name, target,
                     len(out.nodes), edges, out.val_loss_before,
                     "" if out.reached else " (target missed)")  # fmt: skip
        return points


def geomean_edges(points: list[SizePoint], tasks: list[str], target: float) -> float:
    """Geometric mean of edges at `target` over `tasks` (NaN if any of them missed it)."""
    by_task = {p.task: p for p in points if p.target == target}
    if not tasks or any(t not in by_task or not by_task[t].reached for t in tasks):
        return float("nan")
    return geometric_mean([by_task[t].edges for t in tasks])


def point_dicts(points: list[SizePoint]) -> list[dict]:
    return [asdict(p) for p in points]

