"""From examples to tensors: the tokenizer check, and right-padded batches for a causal model.

The check makes sure the choice happens exactly where the context ends: `correct` and `wrong`
must each be one token, and appending one to the context must add exactly that token (byte-level
BPE can merge across the boundary, e.g. `.` + `")` -> `.")`, and then the model would never be
asked this question). `continuation`, when an example has one, extends the check to the code
that follows the correct token.

Only the end of a context matters (the check looks at the boundary, the model reads n_ctx
tokens), so a long context is cut to a tail before it is tokenized: tokenizing a whole 10 MB
line costs gigabytes. The tail is generous (`CONTEXT_MARGIN_CHARS` more than needed), so the
tokens that matter are the ones the whole context gives: byte-level BPE never merges across
the pre-tokenizer's word boundaries, and one lies within the margin in any real text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sparsecircuits.data.tokenizer import EOT
from sparsecircuits.errors import TaskError
from sparsecircuits.tasks.base import TaskExample

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CONTEXT_MARGIN_CHARS = 4096
"""Characters kept beyond what is needed when a context is cut before tokenizing; also the
whole tail the boundary check tokenizes."""


def context_tail(context: str, chars: int) -> str:
    """The last `chars` characters of a context (all of it when shorter)."""
    return context if len(context) <= chars else context[-chars:]


class ExampleChecker:
    """Tokenizer checks for examples, with candidate ids cached (they repeat a lot)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: dict[str, int | None] = {}
        self._longest: int | None = None

    @property
    def longest_token_chars(self) -> int:
        """Characters in the longest token (at most its bytes): n tokens never cover more
        than n times this."""
        if self._longest is None:
            self._longest = max(len(t) for t in self.tokenizer.get_vocab())
        return self._longest

    def candidate_id(self, text: str) -> int | None:
        """The token id of `text`, or None when it is not exactly one token."""
        if text not in self._ids:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            self._ids[text] = ids[0] if len(ids) == 1 else None
        return self._ids[text]

    def offending_candidates(self, ex: TaskExample) -> list[str]:
        return [c for c in (ex.correct, ex.wrong) if self.candidate_id(c) is None]

    def boundary_failures(self, examples: Sequence[TaskExample]) -> list[str | None]:
        """Per example: None if the choice is made where the context ends, else a reason."""
        texts = []
        for ex in examples:
            ctx = context_tail(ex.context, CONTEXT_MARGIN_CHARS)
            texts += [ctx, ctx + ex.correct + ex.continuation, ctx + ex.wrong]
        # One call for all examples: encode_batch has a fixed cost per call.
        encoded = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        return [self._failure(ex, *encoded[3 * i : 3 * i + 3]) for i, ex in enumerate(examples)]

    def _failure(
        self, ex: TaskExample, ctx: list[int], with_correct: list[int], with_wrong: list[int]
    ) -> str | None:
        if not ctx:
            return "empty context"
        n = len(ctx)
        for cand, ids, full in (
            (ex.correct, with_correct, ex.correct + ex.continuation),
            (ex.wrong, with_wrong, ex.wrong),
        ):
            cid = self.candidate_id(cand)
            if ids[:n] != ctx or len(ids) <= n or ids[n] != cid:
                tail = [self.tokenizer.decode([i]) for i in ids[max(n - 2, 0) : n + 2]]
                end = [self.tokenizer.decode([i]) for i in ctx[-2:]]
                return (
                    f"context ending {end!r} + {full!r} tokenizes as {tail!r}, so {cand!r} "
                    f"is not the next token"
                )
        return None


@dataclass(frozen=True)
class TaskBatch:
    """Encoded examples, right-padded: read the logits at position `lengths - 1`.

    Right padding is exact for a causal model without a padding mask: later positions (the
    padding) cannot change earlier logits.
    """

    tokens: torch.Tensor
    """[N, T_max] int64 token ids, padded on the right with the EOT id."""
    lengths: torch.Tensor
    """[N] int64 number of real tokens per row (>= 1)."""
    correct_id: torch.Tensor
    """[N] int64 id of the correct candidate."""
    wrong_id: torch.Tensor
    """[N] int64 id of the wrong candidate."""
    label: torch.Tensor
    """[N] int64 class (0 or 1) of each example."""
    n_truncated: int = 0
    """Rows whose context was longer than n_ctx and lost tokens on the left."""

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: str | torch.device) -> TaskBatch:
        return TaskBatch(
            self.tokens.to(device),
            self.lengths.to(device),
            self.correct_id.to(device),
            self.wrong_id.to(device),
            self.label.to(device),
            self.n_truncated,
        )

    def select(self, index: slice | torch.Tensor) -> TaskBatch:
        """A sub-batch (a slice or an index tensor), trimmed to its own longest row."""
        lengths = self.lengths[index]
        t_max = int(lengths.max()) if lengths.numel() else 0
        return TaskBatch(
            self.tokens[index][:, :t_max],
            lengths,
            self.correct_id[index],
            self.wrong_id[index],
            self.label[index],
            0,  # truncation is a property of the encoding, counted once on the full batch
        )


def pad_id(tokenizer: Tokenizer) -> int:
    """EOT if the tokenizer has it; padding is never read, so 0 is as good otherwise."""
    idx = tokenizer.token_to_id(EOT)
    return 0 if idx is None else idx


def encode_examples(
    examples: Sequence[TaskExample], tokenizer: Tokenizer, n_ctx: int | None = None
) -> TaskBatch:
    """Encode examples into a right-padded batch.

    Contexts longer than `n_ctx` tokens are cut on the left (the end, where the choice is, is
    kept) and counted in `n_truncated`. Candidates must be single tokens (TaskError listing the
    ones that are not). The boundary check itself is done when splits are built with a
    tokenizer (`Task.splits(tokenizer=...)`).
    """
    if not examples:
        raise TaskError("no examples to encode")
    if n_ctx is not None and n_ctx < 1:
        raise TaskError(f"n_ctx must be >= 1, got {n_ctx}")
    checker = ExampleChecker(tokenizer)
    bad = sorted({c for ex in examples for c in checker.offending_candidates(ex)})
    if bad:
        raise TaskError(
            "candidates that are not single tokens in this tokenizer: "
            + ", ".join(repr(c) for c in bad)
        )
    # Cut first: the tail still holds more than n_ctx tokens whenever the whole context does.
    keep = None if n_ctx is None else n_ctx * checker.longest_token_chars + CONTEXT_MARGIN_CHARS
    contexts = [ex.context if keep is None else context_tail(ex.context, keep) for ex in examples]
    encoded = tokenizer.encode_batch(contexts, add_special_tokens=False)
    rows: list[list[int]] = []
    n_truncated = 0
    for ex, enc in zip(examples, encoded, strict=True):
        ids = enc.ids
        if not ids:
            raise TaskError(f"empty context (correct {ex.correct!r}, wrong {ex.wrong!r})")
        if n_ctx is not None and len(ids) > n_ctx:
            ids = ids[-n_ctx:]
            n_truncated += 1
        rows.append(ids)
    t_max = max(len(r) for r in rows)
    tokens = torch.full((len(rows), t_max), pad_id(tokenizer), dtype=torch.long)  # [N, T_max]
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return TaskBatch(
        tokens=tokens,
        lengths=torch.tensor([len(r) for r in rows], dtype=torch.long),
        correct_id=torch.tensor([checker.candidate_id(ex.correct) for ex in examples]),
        wrong_id=torch.tensor([checker.candidate_id(ex.wrong) for ex in examples]),
        label=torch.tensor([ex.label for ex in examples], dtype=torch.long),
        n_truncated=n_truncated,
    )
