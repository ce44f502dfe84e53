"""Find the SAE latent that best carries "inside a single-quoted string" (docs/sae.md).

Labels come from Python's own tokenizer: every model token whose characters lie wholly inside
the body of a single-quoted string literal ('...', with any prefix such as r or b, not
'''...''') is inside (1); tokens that overlap a quote character are skipped; every other token
is outside (0). The files are cut into n_ctx windows, run through the model up to the SAE's
location, and each latent is scored by the F1 of "fires" (z > 0) against "inside"; the best
latents are printed with precision, recall and their mean value inside and outside.

    python scripts/find_string_latent.py models/demo-dense/sae-1.resid_post-k32 \
        --corpus tests/corpus --tokens 60000
"""

from __future__ import annotations

import argparse
import io
import sys
import tokenize
from pathlib import Path

import torch

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.sae.activations import record
from sparsecircuits.sae.sae_file import check_fits, load_sae

SKIP = -1


CONCEPTS = {"single": "single-quoted strings", "double": "double-quoted strings",
            "comment": "comments"}
"""single: the body of a '...' literal; double: of a "..." literal; comment: after a '#'."""


def bodies(text: str, concept: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the concept's bodies, found by Python's tokenizer."""
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return line_starts[pos[0] - 1] + pos[1]

    spans = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if concept == "comment" and tok.type == tokenize.COMMENT:
                spans.append((offset(tok.start) + 1, offset(tok.end)))
                continue
            if tok.type != tokenize.STRING:
                continue
            body = tok.string.lstrip("rRbBuUfF")
            quote = "'" if concept == "single" else '"'
            if concept == "comment" or not body.startswith(quote) or body.startswith(quote * 3):
                continue
            start = offset(tok.start) + len(tok.string) - len(body)
            spans.append((start + 1, offset(tok.end) - 1))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []  # a file Python cannot tokenize is left out
    return spans


def label_tokens(offsets: list[tuple[int, int]], text: str, spans) -> list[int]:
    """1 inside a body, 0 outside every literal, SKIP where a token touches a quote."""
    inside = [0] * (len(text) + 1)
    for s, e in spans:
        for i in range(s, e):
            inside[i] = 1
        for i in (s - 1, e):
            inside[i] = SKIP
    labels = []
    for a, b in offsets:
        marks = set(inside[a:b]) or {0}
        labels.append(SKIP if SKIP in marks or len(marks) > 1 else marks.pop())
    return labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sae", type=Path)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--corpus", type=Path, default=Path("tests/corpus"))
    parser.add_argument("--tokens", type=int, default=60_000)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--concept", choices=list(CONCEPTS), default="single")
    args = parser.parse_args()

    handle = load_sae(args.sae)
    loaded = load_checkpoint(args.checkpoint or handle.meta["model"]["path"])
    check_fits(handle, loaded)
    n_ctx = loaded.config.model.n_ctx
    ids, labels = [], []
    for file in sorted(args.corpus.rglob("*.py")):
        text = file.read_text(encoding="utf-8", errors="replace")
        enc = loaded.tokenizer.encode(text, add_special_tokens=False)
        file_labels = label_tokens(enc.offsets, text, bodies(text, args.concept))
        usable = len(enc.ids) // n_ctx * n_ctx  # whole windows only
        ids += enc.ids[:usable]
        labels += file_labels[:usable]
        if len(ids) >= args.tokens:
            break
    windows = torch.tensor(ids).view(-1, n_ctx)
    label = torch.tensor(labels)
    with torch.no_grad():
        z = torch.cat([handle.sae.encode(record(loaded.model, windows[i : i + 16],
                                                handle.location).float()).flatten(0, 1)
                       for i in range(0, len(windows), 16)])  # fmt: skip  [tokens, d_sae]
    keep = label != SKIP
    z, y = z[keep], label[keep].bool()
    fires = z > 0
    tp = (fires & y[:, None]).sum(0).double()
    precision = tp / fires.sum(0).clamp_min(1)
    recall = tp / y.sum()
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    print(f"{len(y):,} labelled tokens from {args.corpus} ({int(y.sum()):,} inside "
          f"{CONCEPTS[args.concept]}); SAE {handle.path.parent.name} at {handle.location}")
    print("latent     F1  precision  recall  mean inside  mean outside")
    for i in f1.argsort(descending=True)[: args.top].tolist():
        print(f"{i:>6} {f1[i]:6.3f} {precision[i]:10.3f} {recall[i]:7.3f} "
              f"{z[y, i].mean():12.4f} {z[~y, i].mean():13.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
