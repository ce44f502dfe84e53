"""Task rows that share a prefix, packed into one sequence so the prefix is computed once.

A contrast task's examples come in pairs that differ in one token near the end (the opening
quote of `single_double_quote`); before that token the two rows are the same, and in a
causal model so is every activation there. A packed row holds a group of rows as

    [shared prefix | rest of row 1 | rest of row 2 | ... | padding]

and an attention mask lets each row's rest see the prefix and itself only: exactly what the
row sees on its own. The blocks see positions through the causal mask alone (a learned
position embedding is in the residual stream the sweep starts from, gathered with it), so
a packed forward gives each row's numbers, for about half the positions on such a task.
Used by the report's node-ablation sweep (`viewer/sweep.py`; docs/usage.md, the report).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

MAX_GROUP = 4
"""Rows per packed row at most: attention over a packed row grows with its length squared."""


@dataclass(frozen=True)
class Packing:
    """Some rows of a batch packed into G rows of Tp positions, each holding up to M rows."""

    rows: Tensor
    """[n] the batch rows packed here, in the order every per-row output of this packing has."""
    source: tuple[Tensor, Tensor]
    """(batch row, position) [G, Tp] each: where each packed position's activations are taken
    from (padding: any real position; nothing reads it)."""
    bias: Tensor
    """[G, 1, Tp, Tp] attention bias: 0 where a query position may see a key, -inf elsewhere."""
    queries: Tensor
    """[G, M] the packed positions read (each row's last token); unused slots repeat one."""
    order: Tensor
    """[n] the index into the flattened [G * M] queries of each of `rows`."""
    query_bias: Tensor
    """[G, 1, M, Tp] the rows of `bias` at the read positions (the last block's queries)."""

    def to(self, device: torch.device | str) -> Packing:
        """This packing with every tensor on `device`."""
        move = {f.name: getattr(self, f.name) for f in fields(self)}
        return Packing(**{
            name: tuple(t.to(device) for t in v) if isinstance(v, tuple) else v.to(device)
            for name, v in move.items()
        })

    def gather(self, x: Tensor) -> Tensor:
        """x [batch, T, ...] of the whole batch -> [G, Tp, ...] in this packing."""
        row, pos = self.source
        return x[row, pos]

    def at_queries(self, x: Tensor) -> Tensor:
        """x [B, Tp, ...] packed (B = copies * G) -> [B, M, ...] at the read positions."""
        G, M = self.queries.shape
        copies = len(x) // G
        rows = torch.arange(len(x), device=x.device)[:, None]  # [B, 1]
        return x[rows, self.queries.repeat(copies, 1)]  # [B, M, ...]

    def per_row(self, x: Tensor) -> Tensor:
        """x [copies * G, M, ...] at the read positions -> [copies * n, ...] in `rows` order."""
        G, M = self.queries.shape
        flat = x.reshape(len(x) // G, G * M, *x.shape[2:])
        return flat[:, self.order].flatten(0, 1)


def pack(tokens: Tensor, lengths: Tensor, most: int = 4) -> list[Packing]:
    """The rows of a right-padded batch (tokens [n, T], lengths [n]) packed by shared prefix,
    in up to `most` packings of similar packed length (each padded to its own longest), on
    the tokens' device."""
    device = tokens.device
    tokens, lengths = tokens.cpu(), lengths.cpu()
    groups = _prefix_groups(tokens, lengths)
    sizes = torch.tensor([_packed_length(lengths, g, p) for g, p in groups])
    order = sizes.argsort(stable=True)
    k = max(1, min(most, len(groups) // 4))
    return [_packing([groups[i] for i in part.tolist()], lengths).to(device)
            for part in order.tensor_split(k) if len(part)]


def _common_prefix(tokens: Tensor, lengths: Tensor, a: int, b: int) -> int:
    n = int(min(lengths[a], lengths[b]))
    differs = (tokens[a, :n] != tokens[b, :n]).nonzero()
    return int(differs[0]) if len(differs) else n


def _prefix_groups(tokens: Tensor, lengths: Tensor) -> list[tuple[list[int], int]]:
    """(rows, shared prefix length) of each group. Rows in token order: rows sharing a long
    prefix are neighbours, and the prefix a run shares is the least of its neighbours'. A
    row joins the group before it when that saves at least half the row's positions."""
    by_tokens = sorted(range(len(tokens)), key=lambda i: tokens[i, : lengths[i]].tolist())
    groups: list[tuple[list[int], int]] = []
    for i in by_tokens:
        if groups:
            members, prefix = groups[-1]
            shared = min(prefix, _common_prefix(tokens, lengths, members[-1], i))
            alone = _packed_length(lengths, members, prefix) + int(lengths[i])
            joined = _packed_length(lengths, members + [i], shared)
            if len(members) < MAX_GROUP and 2 * joined <= 2 * alone - int(lengths[i]):
                groups[-1] = (members + [i], shared)
                continue
        groups.append(([i], int(lengths[i])))
    return groups


def _packed_length(lengths: Tensor, members: list[int], prefix: int) -> int:
    return prefix + sum(int(lengths[i]) - prefix for i in members)


def _packing(groups: list[tuple[list[int], int]], lengths: Tensor) -> Packing:
    """One packed row per group: where its positions come from, who sees whom, what is read."""
    G = len(groups)
    Tp = max(_packed_length(lengths, m, p) for m, p in groups)
    M = max(len(m) for m, _ in groups)
    src_row = torch.zeros(G, Tp, dtype=torch.long)
    src_pos = torch.zeros(G, Tp, dtype=torch.long)
    # Padding positions see what a causal mask lets them (never all -inf: no NaN); real
    # positions never see padding, which comes after them.
    allowed = torch.ones(Tp, Tp, dtype=torch.bool).tril().repeat(G, 1, 1)  # [G, Tp, Tp]
    queries = torch.zeros(G, M, dtype=torch.long)
    rows, order = [], []
    for g, (members, prefix) in enumerate(groups):
        src_row[g, :prefix] = members[0]
        src_pos[g, :prefix] = torch.arange(prefix)
        start = prefix
        for m, i in enumerate(members):
            rest = int(lengths[i]) - prefix
            span = slice(start, start + rest)
            src_row[g, span] = i
            src_pos[g, span] = torch.arange(prefix, prefix + rest)
            allowed[g, span, prefix:start] = False  # not the rows packed before this one
            queries[g, m] = start + rest - 1 if rest else prefix - 1
            rows.append(i)
            order.append(g * M + m)
            start += rest
        queries[g, len(members):] = queries[g, 0]
    bias = torch.zeros(G, 1, Tp, Tp).masked_fill(~allowed[:, None], float("-inf"))
    query_bias = bias[torch.arange(G)[:, None], 0, queries][:, None]  # [G, 1, M, Tp]
    return Packing(torch.tensor(rows), (src_row, src_pos), bias, queries, torch.tensor(order),
                   query_bias)
