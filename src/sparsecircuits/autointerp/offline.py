"""The offline explainer: the predicate (or pair of predicates) that best predicts a unit.

For each unit, with a its oriented activation on the explain tokens and f a predicate's 0/1
indicator there, the explanation is the f maximising the Pearson correlation corr(f, a)
(docs/autointerp.md). Single predicates are ranked for all units of a location at once (one
matrix product [P, M] x [M, U]); the pairs among each unit's `TOP` best (f_i AND f_j) follow
from two small Gram matrices, and a pair is kept only when it beats the best single predicate
by `PAIR_MARGIN`. Finally "strongest ..." names the predicate q under which the mean activation
inside the chosen set rises most, when it rises by half again or more.

Rendered: "fires inside a single-quoted string, strongest just after a string's opening quote".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sparsecircuits.autointerp.corpus import Corpus, ExplainConfig
from sparsecircuits.autointerp.predicates import phrase
from sparsecircuits.autointerp.scoring import (
    Orientation,
    balanced_accuracy,
    correlation,
    held_out_contexts,
    span_max,
)
from sparsecircuits.autointerp.units import Unit

TOP = 8
"""Best single predicates per unit whose pairs are tried."""
PAIR_MARGIN = 0.02
"""A pair must beat the best single predicate's correlation by this much (parsimony)."""
STRONGEST_RATIO = 1.5
"""'strongest ...' needs the mean activation above the unit's mean to grow by this factor."""


@dataclass(frozen=True)
class PredicateExplanation:
    """What the offline explainer found for one unit."""

    predicates: tuple[str, ...]  # one or two predicate names, all must hold
    strongest: str | None  # a predicate under which the activation is highest, or None
    explain_correlation: float  # corr(f, a) on the explain tokens

    def text(self, sign: float) -> str:
        words = "fires " + " and ".join(phrase(p) for p in self.predicates)
        if self.strongest is not None:
            words += f", strongest {phrase(self.strongest)}"
        return words if sign > 0 else f"(negative side) {words}"

    def indicator(self, names: Sequence[str], matrix: np.ndarray) -> np.ndarray:
        """Where the explanation holds: matrix [M, P] of `names` -> [M] bool."""
        cols = [names.index(p) for p in self.predicates]
        return matrix[:, cols].all(1)


def _standardized_corr(cov: Tensor, mean_f: Tensor, std_a: Tensor) -> Tensor:
    std_f = (mean_f * (1 - mean_f)).clamp_min(0).sqrt()
    return cov / (std_f * std_a).clamp_min(1e-12)


@torch.no_grad()
def explain_block(
    names: Sequence[str], matrix: np.ndarray, acts: Tensor, min_count: int
) -> list[PredicateExplanation | None]:
    """Explanations of every column of oriented explain activations acts [M, U] from the
    predicate matrix [M, P]; None for a constant (dead) unit."""
    f = torch.from_numpy(matrix).float()  # [M, P]
    a = acts.float()  # [M, U]
    m = f.shape[0]
    mean_f, mean_a, std_a = f.mean(0), a.mean(0), a.std(0, unbiased=False)  # [P], [U], [U]
    counts = f.sum(0)  # [P]
    cov = f.T @ a / m - mean_f[:, None] * mean_a[None, :]  # [P, U]
    corr = _standardized_corr(cov, mean_f[:, None], std_a[None, :])
    corr[counts < min_count] = -2.0
    out: list[PredicateExplanation | None] = []
    k = min(TOP, f.shape[1])
    for u in range(a.shape[1]):
        if float(std_a[u]) == 0.0 or k == 0:
            out.append(None)
            continue
        au = a[:, u]  # [M]
        top = corr[:, u].topk(k).indices  # [k]
        g = f[:, top]  # [M, k]
        pair_counts = g.T @ g  # [k, k]
        pair_cov = (g * au[:, None]).T @ g / m - pair_counts / m * mean_a[u]
        pair_corr = _standardized_corr(pair_cov, pair_counts / m, std_a[u])
        pair_corr[pair_counts < min_count] = -2.0
        pair_corr = pair_corr.triu(1) + torch.tril(torch.full((k, k), -2.0))
        best_single = float(corr[top[0], u])
        flat = int(pair_corr.argmax())
        i, j = divmod(flat, k)
        if float(pair_corr[i, j]) > best_single + PAIR_MARGIN:
            chosen = (int(top[i]), int(top[j]))
            score = float(pair_corr[i, j])
        else:
            chosen, score = (int(top[0]),), best_single
        inside = f[:, list(chosen)].all(1)  # [M]
        out.append(PredicateExplanation(tuple(names[c] for c in chosen),
                                        _strongest(f, au, inside, chosen, names, min_count,
                                                   float(mean_a[u])), score))  # fmt: skip
    return out


def _strongest(f: Tensor, au: Tensor, inside: Tensor, chosen: tuple[int, ...],
               names: Sequence[str], min_count: int, base: float) -> str | None:  # fmt: skip
    """The predicate under which the activation inside the explanation's set peaks."""
    rows = inside.nonzero().flatten()
    n = len(rows)
    if n < 2 * min_count:
        return None
    fr, ar = f[rows], au[rows]  # [n, P], [n]
    support = fr.sum(0)  # [P]
    means = (fr.T @ ar) / support.clamp_min(1)  # [P]
    usable = (support >= max(min_count // 2, n // 10)) & (support < n)
    usable[list(chosen)] = False
    if not bool(usable.any()):
        return None
    means[~usable] = -float("inf")
    q = int(means.argmax())
    lift, overall = float(means[q]) - base, float(ar.mean()) - base
    return names[q] if overall > 0 and lift >= STRONGEST_RATIO * overall else None


class OfflineExplainer:
    """Predicate explanations; detection judged by whether the predicate holds in a span."""

    kind = "offline"

    def settings(self) -> dict:
        return {"kind": self.kind, "version": 1}

    def run(self, corpus: Corpus, units: Sequence[Unit], acts_e: Tensor, acts_h: Tensor,
            orients: Sequence[Orientation], cfg: ExplainConfig) -> Iterator[tuple[Unit, dict]]:
        """Results of units whose oriented activations are acts_e [M, U] (explain tokens) and
        acts_h [n_rows, L, U] (held-out windows)."""
        names = corpus.explain.predicates.names
        held_matrix = corpus.held_out.predicates.matrix  # [n_rows * L, P]
        found = explain_block(names, corpus.explain.predicates.matrix, acts_e, cfg.min_count)
        rows, length = acts_h.shape[:2]
        for u, (unit, expl, o) in enumerate(zip(units, found, orients, strict=True)):
            result = {"status": "inactive", "explanation": None, "detection": None,
                      "correlation": None, "sign": o.sign, "threshold": o.threshold}
            if expl is None or o.spread <= 0:
                yield unit, result
                continue
            held = held_out_contexts(acts_h[..., u], o.threshold, cfg.span, cfg.contexts,
                                     unit.name, cfg.seed)  # fmt: skip
            holds = torch.from_numpy(expl.indicator(names, held_matrix)).view(rows, length)
            said = span_max(holds.float(), cfg.span).flatten().numpy() > 0
            result.update(
                explanation=expl.text(o.sign), predicates=list(expl.predicates),
                strongest=expl.strongest, explain_correlation=expl.explain_correlation,
                correlation=correlation(holds.flatten().float(), acts_h[..., u].flatten()),
                contexts=[len(held.pos), len(held.neg)],
            )  # fmt: skip
            if len(held.pos) and len(held.neg):
                result.update(status="ok", detection=balanced_accuracy(said[held.pos],
                                                                       said[held.neg]))
            yield unit, result
