"""A BPE in which every built-in task is expressible, whatever corpus it was trained on.

A task asks for a choice between two tokens, so each candidate (` root`, `")`, a newline with
its indentation, ...) must be one token, and the choice must be made where the context ends:
appending the correct candidate and the code after it must start with exactly that token. A
plain BPE of a new corpus may break either: a mixed corpus lost ` root` and ` names`, and one
that learns ` enum` would read ` enumerate` as ` enum` + `erate` instead of the ` en` +
`umerate` that `enumerate_range` asks for.

`task_token_rules` reads both constraints off the tasks themselves (their examples, drawn with
a fixed seed): the candidates are *required* tokens; the tokens that would extend a candidate
into the code after it, within one pre-token (` enu` ... ` enumerate`), are *forbidden*.
`enforce_rules` then edits a trained BPE's merge list, keeping its vocabulary size:

1. forbidden tokens are removed, with every merge built on them;
2. the last merges are dropped, as many as step 3 needs (the first m merges of a BPE are the
   BPE one would have trained with m merges: training is greedy);
3. each missing required token is built from the pieces the remaining merges cut it into, by
   merges appended at the lowest priority ((p1, p2), then (p1p2, p3), ...): such a merge only
   acts once no trained merge applies, so text elsewhere tokenizes as before;
4. the places freed by step 1 are filled with the next trained merges (the BPE is trained with
   `SPARE_MERGES` more than it keeps).

With nothing to change the result is exactly the plain BPE of that size. Used by `prepare.py`
when `data.task_tokens` is on; the tests build every task's splits with such a tokenizer.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer, pre_tokenizers

from sparsecircuits.data.tokenizer import train_tokenizer
from sparsecircuits.errors import DataError

logger = logging.getLogger(__name__)

SPARE_MERGES = 256
"""Merges learned beyond the vocabulary size, to take the place of removed forbidden tokens."""
DRAWS_PER_TASK = 1000
"""Template draws read per task: enough to meet every name of every pool a task draws from."""
RULES_SEED = 0
"""Seed of those draws (the rules do not depend on the seed a run builds its splits with)."""

Merge = tuple[str, str]


@dataclass(frozen=True)
class TokenRules:
    """What a tokenizer must contain and must not contain (as text, not byte-level symbols)."""

    required: tuple[str, ...]
    """Texts that must each be one token (every task candidate), sorted."""
    forbidden: tuple[str, ...]
    """Texts that must not be tokens: a candidate extended into the code that follows it."""

    def digest(self) -> str:
        """A hash of the rules, for cache fingerprints (the rules change with the tasks)."""
        doc = json.dumps({"required": self.required, "forbidden": self.forbidden})
        return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def task_token_rules(draws: int = DRAWS_PER_TASK) -> TokenRules:
    """The rules that make every built-in task expressible (see the module docstring)."""
    # Imported here: the tasks build on the data package, not the other way round.
    from sparsecircuits.tasks.registry import all_tasks

    required: set[str] = set()
    followed: set[tuple[str, str]] = set()  # (candidate, candidate + the code after it)
    for task in all_tasks():
        rng = random.Random(f"{RULES_SEED}:{task.name}")
        for group in itertools.islice(task.groups(rng), draws):
            for ex in group:
                required.update((ex.correct, ex.wrong))
                if ex.continuation:
                    followed.add((ex.correct, ex.correct + ex.continuation))
    return rules_from_examples(required, followed)


def rules_from_examples(required: Iterable[str], followed: Iterable[tuple[str, str]]) -> TokenRules:
    """Rules from candidates and (candidate, candidate + continuation) pairs.

    A token that starts with a candidate and continues into the next code within one pre-token
    would be taken instead of the candidate, so every such prefix of that pre-token is
    forbidden (` enumerate` after ` en`: ` enu`, ` enum`, ..., ` enumerate`).
    """
    required = set(required)
    forbidden: set[str] = set()
    for cand, text in followed:
        first = _first_pre_token_text(text)
        if len(first) > len(cand) and first.startswith(cand):
            forbidden.update(first[:n] for n in range(len(cand) + 1, len(first) + 1))
    clash = sorted(required & forbidden)
    if clash:
        raise DataError(f"task token rules contradict themselves: {clash!r} required and forbidden")
    return TokenRules(tuple(sorted(required)), tuple(sorted(forbidden)))


def train_task_tokenizer(texts: Sequence[str], vocab_size: int, rules: TokenRules) -> Tokenizer:
    """A byte-level BPE of exactly `vocab_size` tokens that satisfies `rules`."""
    tok = train_tokenizer(texts, vocab_size, spare=SPARE_MERGES)
    return enforce_rules(tok, rules, vocab_size)


def enforce_rules(tok: Tokenizer, rules: TokenRules, vocab_size: int) -> Tokenizer:
    """`tok` (a BPE trained with spare merges) edited to satisfy `rules`, with `vocab_size`
    tokens; DataError if that cannot be done (the vocabulary is too small for the rules)."""
    doc = json.loads(tok.to_str())
    model = doc["model"]
    if model.get("type") != "BPE":
        raise DataError("task tokens can only be enforced on a BPE tokenizer")
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    merged = {a + b for a, b in merges}
    base = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]) if t not in merged]
    n_merges = vocab_size - len(base)  # one new token per merge
    required = [_single_pre_token(text) for text in rules.required]
    required.sort(key=lambda s: (len(s), s))  # short first: they are parts of longer ones
    forbidden = {_single_pre_token(text) for text in rules.forbidden}

    kept = _without(merges, forbidden)
    m = min(n_merges, len(kept))
    while True:
        chains = _chains(kept[:m], required)
        n_new = len({a + b for a, b in chains} - {a + b for a, b in kept[:m]})
        if m + n_new <= n_merges or m == 0:
            break
        m = max(0, min(m - 1, n_merges - n_new))
    final = kept[:m] + chains
    have = set(base) | {a + b for a, b in final}
    for a, b in kept[m:]:
        if len(have) >= vocab_size:
            break
        if a + b not in have:
            final.append((a, b))
            have.add(a + b)
    if len(have) != vocab_size:
        raise DataError(
            f"a {vocab_size}-token vocabulary cannot hold the {len(required)} task candidates "
            f"(it would have {len(have)} tokens); raise the vocab size or add text"
        )
    vocab: dict[str, int] = {t: i for i, t in enumerate(base)}
    for a, b in final:
        vocab.setdefault(a + b, len(vocab))
    model["vocab"] = vocab
    model["merges"] = [list(pair) for pair in final]
    model["ignore_merges"] = False  # a word found whole in the vocab must still go by merges
    out = Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
    _verify(out, rules, vocab_size)
    logger.info(
        "task tokens: %d trained merges removed (forbidden tokens and those built on them), "
        "%d merges appended to build missing candidates, %d trained merges kept in order",
        len(merges) - len(kept),
        len(chains),
        m,
    )
    return out


def _without(merges: list[Merge], forbidden: set[str]) -> list[Merge]:
    """The merges, minus those that make a forbidden token or are built on a removed one."""
    removed = set(forbidden)
    kept = []
    for a, b in merges:
        if a in removed or b in removed or a + b in removed:
            removed.add(a + b)
        else:
            kept.append((a, b))
    return kept


def _chains(merges: list[Merge], required: list[str]) -> list[Merge]:
    """Merges to append after `merges` so that every required token is produced whole.

    Planned one token at a time against the merges so far (earlier chains included), so a
    chain starts from the pieces the final tokenizer really has at that point.
    """
    ranks = {pair: i for i, pair in enumerate(merges)}
    extra: list[Merge] = []
    for target in required:
        pieces = bpe(target, ranks)
        if len(pieces) == 1:
            continue
        left = pieces[0]
        for piece in pieces[1:]:
            pair = (left, piece)
            left += piece
            if pair in ranks:  # an earlier chain's merge: already there
                continue
            ranks[pair] = len(ranks)
            extra.append(pair)
    return extra


def bpe(word: str, ranks: dict[Merge, int]) -> list[str]:
    """The pieces a BPE with these merge ranks cuts one pre-token into (lowest rank first,
    leftmost on ties, as the `tokenizers` library does)."""
    parts = list(word)
    while len(parts) > 1:
        best = min(
            ((ranks[pair], i) for i, pair in enumerate(itertools.pairwise(parts)) if pair in ranks),
            default=None,
        )
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _verify(tok: Tokenizer, rules: TokenRules, vocab_size: int) -> None:
    if tok.get_vocab_size() != vocab_size:
        raise DataError(f"task-token BPE has {tok.get_vocab_size()} tokens, not {vocab_size}")
    split = [t for t in rules.required if len(tok.encode(t, add_special_tokens=False).ids) != 1]
    vocab = tok.get_vocab()
    present = [t for t in rules.forbidden if _single_pre_token(t) in vocab]
    if split or present:
        raise DataError(
            f"task-token BPE: still not one token: {split!r}; still present: {present!r}"
        )


def _pre_tokens(text: str) -> list[str]:
    """`text` cut by the byte-level pre-tokenizer, in byte-level symbols (` x` -> `Ġx`)."""
    return [piece for piece, _ in _pre_tokenizer().pre_tokenize_str(text)]


def _pre_tokenizer() -> pre_tokenizers.ByteLevel:
    # The pre-tokenizer of `train_tokenizer`: candidates are cut as the corpus was.
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _first_pre_token_text(text: str) -> str:
    """The text of the first pre-token of `text` (` enumerate(x):` -> ` enumerate`)."""
    start, end = _pre_tokenizer().pre_tokenize_str(text)[0][1]
    return text[start:end]


def _single_pre_token(text: str) -> str:
    pieces = _pre_tokens(text)
    if len(pieces) != 1:
        raise DataError(f"task candidate {text!r} spans {len(pieces)} pre-tokens: never one token")
    return pieces[0]
