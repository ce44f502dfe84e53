"""What the nodes of a quote-closing circuit do, read against the paper's mechanism.

`sparsecircuits circuit describe CIRCUIT` (docs/usage.md) runs the circuit's model on a quote
task (by default the circuit's own) twice: as the circuit (every other node ablated, exactly as
`circuit eval` measures it, docs/method.md §6) and as the full model. At each example it finds
the *opening quote* (the last token before the read position holding the quote the correct
candidate closes with) and the *read position* (the last token), and measures:

1. the circuit's structure: nodes per location, edges per pair of locations;
2. quote-type separation of every node at both positions: AUC = P(value on a `"` example >
   value on a `'` example), and strength |2 AUC - 1| (0: no information, 1: perfect);
3. for layer-0 MLP neurons: AUC of the value at opening quotes against every other token of the
   contexts (the paper's *detector*) and the type strength at the opening quote (*classifier*);
4. for every head with q or k channels in the circuit: its attention weight from the read
   position to the opening quote, the quote's rank among attended positions, and whether the
   head's v channels (at the quote) and its output (at the read position) carry the type;
5. a verdict per part of the paper's mechanism (docs/method.md §7): quote-type channels at the
   opening quote, a layer-0 MLP detector and classifier, one head that finds the quote and
   copies its type.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sparsecircuits.circuits.evaluate_circuit import (
    ALL_SPLITS,
    CircuitOnTask,
    check_eval_split,
    concat_batches,
    rebuild,
    task_data,
)
from sparsecircuits.errors import TaskError
from sparsecircuits.model.hooks import Recorder, compose
from sparsecircuits.model.locations import parse_node
from sparsecircuits.tasks.encoding import TaskBatch, pad_id

QUOTES = ('"', "'")
"""Quote types in the order of the task's classes (`single_double_quote`: 0 double, 1 single)."""
STRONG = 0.9
"""Strength |2 AUC - 1| at which a node counts as carrying the quote type (or detecting it)."""
WEAK = 0.6
"""Strength at which it counts as partly carrying it."""
FINDS_TOP = 0.8
"""A head finds the opening quote when the quote is its most attended position from the read
position in at least this share of examples..."""
FINDS_LIFT = 3.0
"""...and its weight there is at least this many times uniform attention (1 / positions)."""
CHUNK = 64
"""Examples per forward pass."""
MAX_OTHER = 4096
"""Other-token values a detector's AUC compares against (evenly subsampled beyond this)."""


# ------------------------------------------------------------------------------ where to look


@dataclass(frozen=True)
class QuoteSites:
    """The examples that have an opening quote, and where it and the read position are."""

    rows: Tensor
    """[M] rows of the batch used."""
    opener: Tensor
    """[M] position of the opening-quote token."""
    read: Tensor
    """[M] position whose logits the task reads (length - 1)."""
    single: Tensor
    """[M] bool: the opening quote is `'` (else `"`)."""


def quote_sites(batch: TaskBatch, tokenizer) -> QuoteSites:
    """Find the opening quote of every example: the last token, up to the read position, that
    holds the quote character of the correct candidate (or, if that has none, any quote)."""
    text = {}

    def tok(i: int) -> str:
        if i not in text:
            text[i] = tokenizer.decode([i])
        return text[i]

    rows, opener, read, single = [], [], [], []
    for r in range(len(batch)):
        n = int(batch.lengths[r])
        wanted = [q for q in QUOTES if q in tok(int(batch.correct_id[r]))] or list(QUOTES)
        ids = batch.tokens[r, :n].tolist()
        for pos in range(n - 1, -1, -1):
            found = [q for q in wanted if q in tok(ids[pos])]
            if found:
                last = max(found, key=tok(ids[pos]).rfind)
                rows.append(r), opener.append(pos), read.append(n - 1)
                single.append(last == "'")
                break
    if not rows:
        raise TaskError("no example of this task has a quote before its read position")
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return QuoteSites(as_long(rows), as_long(opener), as_long(read), torch.tensor(single))


# --------------------------------------------------------------------------------- statistics


def auc(pos: Tensor, neg: Tensor) -> float:
    """P(a value of `pos` > a value of `neg`), ties counting half (the Mann-Whitney AUC);
    NaN when either is empty."""
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    p, n = pos.double()[:, None], neg.double()[None, :]
    return float((p > n).double().mean() + 0.5 * (p == n).double().mean())


def strength(a: float) -> float:
    """|2 AUC - 1|: 0 for no separation, 1 for perfect separation in either direction."""
    return abs(2 * a - 1) if a == a else math.nan


def type_auc(values: Tensor, single: Tensor) -> float:
    """AUC of a node's values for `"` examples against `'` examples."""
    return auc(values[~single], values[single])


def _every_nth(x: Tensor, most: int) -> Tensor:
    return x if len(x) <= most else x[torch.linspace(0, len(x) - 1, most).long()]


# ------------------------------------------------------------------------------ attention


def attention_weights(model, layer: int, q: Tensor, k: Tensor) -> Tensor:
    """The attention pattern of layer `layer` from its (hooked) q and k [B, T, n_heads*d_head]:
    [B, H, T, T + 1], the last column the sink slot (all zero for a model without sinks).
    Computed exactly as `Attention.forward` computes it: softmax(q k^T / sqrt(d_head) + mask)."""
    attn = model.blocks[layer].attn
    B, T, _ = q.shape
    H, dh = attn.n_heads, attn.d_head
    q, k = (t.view(B, T, H, dh).transpose(1, 2).float() for t in (q, k))  # [B, H, T, dh]
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, H, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    if attn.sink is None:
        sink = torch.full((B, H, T, 1), float("-inf"), device=q.device)
    else:
        sink = attn.sink.detach().float().view(1, H, 1, 1).expand(B, H, T, 1)
    return torch.cat([scores, sink], -1).softmax(-1)


# ---------------------------------------------------------------------------------- recording


@dataclass
class _Recorded:
    """Per node: values at the opener / read position; per layer-0 neuron: other tokens; per
    head: attention from read to opener and the head's output at the read position."""

    at_open: dict[str, list[Tensor]]
    at_read: dict[str, list[Tensor]]
    other: dict[str, list[Tensor]]
    head_weight: dict[tuple[int, int], list[Tensor]]
    head_rank: dict[tuple[int, int], list[Tensor]]
    head_sink: dict[tuple[int, int], list[Tensor]]
    head_lift: dict[tuple[int, int], list[Tensor]]
    head_out: dict[tuple[int, int], list[Tensor]]


def _heads_of(nodes: list[str], d_head: int, kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    heads = set()
    for name in nodes:
        loc, index = parse_node(name)
        if loc.rsplit(".", 1)[1] in kinds:
            heads.add((int(loc.split(".")[0]), index // d_head))
    return sorted(heads)


@torch.no_grad()
def _record(rebuilt: CircuitOnTask, batch: TaskBatch, sites: QuoteSites, ablated: bool
            ) -> _Recorded:  # fmt: skip
    model = rebuilt.loaded.model
    pruner = rebuilt.pruner
    device = next(model.parameters()).device
    nodes = rebuilt.circuit.node_names
    by_loc: dict[str, list[int]] = {}
    for name in nodes:
        loc, index = parse_node(name)
        by_loc.setdefault(loc, []).append(index)
    d_head = model.cfg.d_head
    heads = _heads_of(nodes, d_head, ("q", "k"))
    wanted = set(by_loc) | {f"{L}.attn.{p}" for L, _ in heads for p in ("q", "k", "v")}
    rec = _Recorded(*({} for _ in range(8)))
    gen = torch.Generator().manual_seed(pruner.cfg.seed + 1)  # as Pruner.logits draws it
    for start in range(0, len(sites.rows), CHUNK):
        part = slice(start, start + CHUNK)
        rows, op, rd = sites.rows[part], sites.opener[part], sites.read[part]
        t_max = int(rd.max()) + 1
        tokens = batch.tokens[rows, :t_max].to(device)  # [b, t]
        b = len(rows)
        recorder = Recorder([loc for loc in model.locations if loc in wanted])
        masks = None
        if ablated:
            masks = pruner.layout.hooks(rebuilt.gates.to(device),
                                        pruner.ablation.values(b, t_max, gen))  # fmt: skip
        model(tokens, hooks=compose(masks, recorder.hooks))  # masks first, then record
        ar = torch.arange(b)
        valid = torch.arange(t_max)[None, :] <= rd[:, None]  # [b, t]
        other = valid & (torch.arange(t_max)[None, :] != op[:, None])
        for loc, idx in by_loc.items():
            acts = recorder.acts[loc].float().cpu()  # [b, t, width]
            for i in idx:
                name = f"{loc}.{i}"
                rec.at_open.setdefault(name, []).append(acts[ar, op, i])
                rec.at_read.setdefault(name, []).append(acts[ar, rd, i])
                if loc == "0.mlp.post_act":
                    rec.other.setdefault(name, []).append(acts[..., i][other])
        for L, h in heads:
            acts = recorder.acts
            w = attention_weights(model, L, acts[f"{L}.attn.q"], acts[f"{L}.attn.k"]).cpu()
            w_read = w[ar, h, rd]  # [b, t + 1]: from the read position
            to_open = w_read[ar, op]
            real = w_read[:, :t_max]
            rank = 1 + ((real > to_open[:, None]) & valid).sum(1)
            v = acts[f"{L}.attn.v"].float().cpu()[..., h * d_head : (h + 1) * d_head]
            out = (real[:, :, None] * v).sum(1)  # [b, d_head]: the head's output at read
            for key, val in (("head_weight", to_open), ("head_rank", rank.float()),
                             ("head_sink", w_read[:, -1]), ("head_out", out),
                             ("head_lift", to_open * (rd + 1).float())):  # fmt: skip
                getattr(rec, key).setdefault((L, h), []).append(val)
    return rec


# -------------------------------------------------------------------------------- description


def _structure(rebuilt: CircuitOnTask) -> dict[str, Any]:
    c = rebuilt.circuit
    per_loc = Counter(n["location"] for n in c.nodes)
    order = {loc: i for i, loc in enumerate(rebuilt.loaded.model.locations)}
    edges = Counter(f"{parse_node(s)[0]} -> {parse_node(t)[0]}" for s, t, _ in c.edges)
    return {
        "nodes": len(c.nodes),
        "edges": len(c.edges),
        "nodes_per_location": {loc: per_loc[loc] for loc in sorted(per_loc, key=order.get)},
        "edges_per_location_pair": dict(sorted(edges.items(), key=lambda kv: -kv[1])),
    }


def _node_rows(rec: _Recorded, single: Tensor, opener_text: list[str]) -> dict[str, dict[str, Any]]:
    """Per node: type AUC and strength at both positions; for layer-0 neurons also the AUC of
    the opening quote against other tokens, per opening-quote token (`("` and ` "` are
    different tokens: a detector may fire on one form only), `detector_auc`, the best such AUC
    on a `"` token and on a `'` token, whichever is lower (firing on both types), and
    `classifier_score`, min(type strength, strength against other tokens on its best quote
    token): type strength alone would count every neuron that merely reads the token, since
    `("` and `('` are different embeddings; a classifier must also respond to quotes."""
    forms = sorted(set(opener_text))
    form_rows = {t: torch.tensor([x == t for x in opener_text]) for t in forms}
    out = {}
    for name in rec.at_open:
        at_open, at_read = torch.cat(rec.at_open[name]), torch.cat(rec.at_read[name])
        a_open, a_read = type_auc(at_open, single), type_auc(at_read, single)
        out[name] = {
            "type_auc_open": a_open, "type_strength_open": strength(a_open),
            "type_auc_read": a_read, "type_strength_read": strength(a_read),
            "mean_open": float(at_open.mean()), "mean_read": float(at_read.mean()),
        }  # fmt: skip
        if name in rec.other:
            other = _every_nth(torch.cat(rec.other[name]), MAX_OTHER)
            a = auc(at_open, other)
            out[name].update({
                "mean_other": float(other.mean()) if len(other) else math.nan,
                "open_vs_other_auc": a,
                "open_vs_other_auc_double": auc(at_open[~single], other),
                "open_vs_other_auc_single": auc(at_open[single], other),
                "open_vs_other_auc_by_token": {
                    t: auc(at_open[rows], other) for t, rows in form_rows.items()
                },
            })  # fmt: skip
            out[name]["detector_auc"] = _detector_auc(out[name]["open_vs_other_auc_by_token"])
            responds = max(map(strength, out[name]["open_vs_other_auc_by_token"].values()))
            out[name]["classifier_score"] = min(_nan0(responds), _nan0(strength(a_open)))
    return out


def _head_rows(rec: _Recorded, single: Tensor, nodes: list[str], d_head: int
               ) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for L, h in rec.head_weight:
        weight = torch.cat(rec.head_weight[(L, h)])
        rank = torch.cat(rec.head_rank[(L, h)])
        out = torch.cat(rec.head_out[(L, h)])  # [M, d_head]
        mine = [n for n in nodes if (lambda p: p[0].startswith(f"{L}.attn.")
                                     and p[1] // d_head == h)(parse_node(n))]  # fmt: skip
        v_nodes = [n for n in mine if parse_node(n)[0].endswith(".v")]
        out_strength = {n: strength(type_auc(out[:, parse_node(n)[1] % d_head], single))
                        for n in v_nodes}  # fmt: skip
        rows.append({
            "head": f"{L}.{h}", "layer": L, "index": h,
            "q_nodes": sum(parse_node(n)[0].endswith(".q") for n in mine),
            "k_nodes": sum(parse_node(n)[0].endswith(".k") for n in mine),
            "v_nodes": v_nodes,
            "weight_to_open": float(weight.mean()),
            "weight_to_open_median": float(weight.median()),
            "open_is_top": float((rank == 1).double().mean()),
            "open_rank_mean": float(rank.mean()),
            "lift_over_uniform": float(torch.cat(rec.head_lift[(L, h)]).mean()),
            "sink_weight": float(torch.cat(rec.head_sink[(L, h)]).mean()),
            "v_out_type_strength": out_strength,
            "best_v_out_type_strength": max(out_strength.values(), default=math.nan),
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["lift_over_uniform"], r["head"]))
    return rows


def _verdicts(nodes: dict[str, dict[str, float]], heads: list[dict[str, Any]]
              ) -> dict[str, dict[str, Any]]:  # fmt: skip
    def best(names, key):
        scored = [(nodes[n][key], n) for n in names if nodes[n][key] == nodes[n][key]]
        return max(scored, default=(math.nan, None))

    def grade(x: float) -> str:
        return "found" if x >= STRONG else "partly" if x >= WEAK else "not found"

    # (a) is about what is *written* into the residual stream at the quote: resid_delta nodes.
    writes = [n for n in nodes if ".resid_delta." in n]
    s_open, n_open = best(writes, "type_strength_open")
    resid = [n for n in nodes if ".act_in." in n or ".resid_delta." in n]
    s_read, n_read = best(resid, "type_strength_read")
    strong = Counter(
        parse_node(n)[0] for n in writes if nodes[n]["type_strength_open"] >= STRONG
    )  # fmt: skip
    a = {
        "verdict": grade(s_open) if writes else "not found",
        "best_open": n_open,
        "best_open_strength": s_open,
        "best_read": n_read,
        "best_read_strength": s_read,
        "writes_strong_at_open": sum(strong.values()),
        "writes": len(writes),
        "writes_strong_at_open_per_location": dict(sorted(strong.items())),
    }

    neurons = [n for n in nodes if n.startswith("0.mlp.post_act.")]
    detectors = [n for n in neurons if nodes[n]["detector_auc"] >= STRONG]
    # A classifier responds to opening quotes (fires or is silenced on some quote token) and
    # its value there gives the type; type strength alone would also count every neuron that
    # merely reads the token, since `("` and `('` are different embeddings.
    classifiers = [n for n in neurons if nodes[n]["classifier_score"] >= STRONG]
    both = bool(detectors) and bool(classifiers)
    b = {
        "verdict": "found" if both else "partly" if detectors or classifiers else "not found",
        "layer0_neurons": len(neurons),
        "n_detectors": len(detectors),
        "n_classifiers": len(classifiers),
        "detectors": detectors,
        "classifiers": classifiers,
    }

    finders = [
        h for h in heads if h["open_is_top"] >= FINDS_TOP and h["lift_over_uniform"] >= FINDS_LIFT
    ]
    copiers = [h for h in finders if h["best_v_out_type_strength"] >= STRONG]
    top = (copiers or finders or heads or [None])[0]
    if copiers:
        verdict = "found" if len(copiers) == 1 else "partly"
    elif finders or any(
        h["lift_over_uniform"] >= FINDS_LIFT and h["best_v_out_type_strength"] >= STRONG
        for h in heads
    ):  # a head that finds it most of the time, or copies it while attending it above uniform
        verdict = "partly"
    else:
        verdict = "not found"
    c = {
        "verdict": verdict,
        "heads_with_qk": len(heads),
        "heads_attending": [h["head"] for h in finders],
        "heads_attending_and_copying": [h["head"] for h in copiers],
        "best_head": top["head"] if top else None,
        "best_weight_to_open": top["weight_to_open"] if top else math.nan,
        "best_open_is_top": top["open_is_top"] if top else math.nan,
        "best_lift_over_uniform": top["lift_over_uniform"] if top else math.nan,
        "best_v_out_type_strength": top["best_v_out_type_strength"] if top else math.nan,
    }
    return {"type_channels": a, "layer0_mlp": b, "head": c}


def _type_at_read(nodes: dict[str, dict[str, Any]], order: list[str]) -> dict[str, Any]:
    """Where the quote type first reaches the read position: the earliest location (in forward
    order) with a node of type strength >= STRONG there, and the strongest node before it (the
    read token is the same for both types, so the type must have been moved there)."""
    rank = {loc: i for i, loc in enumerate(order)}
    strong = [n for n, r in nodes.items() if r["type_strength_read"] >= STRONG]
    if not strong:
        first = None
    else:
        first = min((parse_node(n)[0] for n in strong), key=rank.__getitem__)
    limit = rank[first] if first is not None else len(order)
    before = [(_nan0(r["type_strength_read"]), n) for n, r in nodes.items()
              if rank[parse_node(n)[0]] < limit]  # fmt: skip
    best, best_node = max(before, default=(math.nan, None))
    return {
        "first_location": first,
        "nodes_there": sorted(n for n in strong if parse_node(n)[0] == first),
        "strong_nodes": len(strong),
        "max_before": best,
        "max_before_node": best_node,
    }


def _opener_tokens(batch: TaskBatch, sites: QuoteSites, tok) -> dict[str, int]:
    """How often each token is the opening quote (most common first)."""
    ids = batch.tokens[sites.rows, sites.opener].tolist()
    return dict(Counter(tok.decode([i]) for i in ids).most_common())


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


def _detector_auc(by_token: dict[str, float]) -> float:
    """min(best AUC on a `"` token, best AUC on a `'` token): high when it fires on both."""
    best = [max((a for t, a in by_token.items() if q in t and a == a), default=math.nan)
            for q in QUOTES]  # fmt: skip
    return min(best) if all(b == b for b in best) else math.nan


def describe(
    circuit_path: str | Path,
    task: str | None = None,
    split: str = ALL_SPLITS,
    model: str | Path | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Everything the module docstring lists, as one JSON-ready dict."""
    check_eval_split(split)
    rebuilt = rebuild(circuit_path, model, device, cache_dir)
    data = task_data(rebuilt, task or rebuilt.circuit.task["name"])
    tok = rebuilt.loaded.tokenizer
    if split == ALL_SPLITS:
        batch = concat_batches([data.train, data.val, data.test], pad_id(tok))
    else:
        batch = getattr(data, split)
    sites = quote_sites(batch, tok)
    single = sites.single
    nodes = rebuilt.circuit.node_names
    d_head = rebuilt.loaded.model.cfg.d_head
    order = list(rebuilt.loaded.model.locations)
    opener_text = [tok.decode([i]) for i in batch.tokens[sites.rows, sites.opener].tolist()]
    runs = {}
    for mode, ablated in (("circuit_run", True), ("full_model_run", False)):
        rec = _record(rebuilt, batch, sites, ablated)
        node_rows = _node_rows(rec, single, opener_text)
        heads = _head_rows(rec, single, nodes, d_head)
        runs[mode] = {"nodes": node_rows, "heads": heads,
                      "type_at_read": _type_at_read(node_rows, order),
                      "verdicts": _verdicts(node_rows, heads)}  # fmt: skip
    c = rebuilt.circuit
    return {
        "circuit": str(c.path),
        "model": str(rebuilt.loaded.path),
        "circuit_task": c.task["name"],
        "target_loss": c.target_loss,
        "loss": rebuilt.pruner.cfg.loss,
        "sufficiency_accuracy": c.validation.get("sufficiency", {}).get("accuracy"),
        "ablation_source": rebuilt.ablation_source,
        "task": data.name,
        "split": split,
        "examples": len(batch),
        "examples_with_quote": len(sites.rows),
        "single_quote_examples": int(single.sum()),
        "opener_tokens": _opener_tokens(batch, sites, tok),
        "thresholds": {
            "strong": STRONG,
            "weak": WEAK,
            "finds_top": FINDS_TOP,
            "finds_lift": FINDS_LIFT,
        },
        "structure": _structure(rebuilt),
        **runs,
    }
