"""Hand-written models of OpenAI's circuit-sparsity format, independent of our code.

Written from the format's description (docs/openai.md), not from our importer: a BPE
learner that writes `encoder.json` + `vocab.bpe`, tiktoken's encoding rule (regex split, then
lowest-rank merges), their GPT's forward pass from a raw state dict, and a writer for a model
directory. The tests compare our importer's output with these.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

EOT = "<|endoftext|>"
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)
}  # the Unicode White_Space property, which `\s` means in tiktoken's regex engine


def _byte_chars() -> dict[int, str]:
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


BYTE_CHARS = _byte_chars()
BYTE_ORDER = list(BYTE_CHARS)  # printable bytes first: the rank order of the single bytes


def _letter(c: str) -> bool:
    return unicodedata.category(c).startswith("L")


def _number(c: str) -> bool:
    return unicodedata.category(c).startswith("N")


def _other(c: str) -> bool:
    return c not in WHITE_SPACE and not _letter(c) and not _number(c)


def pretokenize(text: str) -> list[str]:
    """tinypython's regex, alternative by alternative, as a backtracking engine matches it:
    [^\\r\\n\\p{L}\\p{N}]?\\p{L}+ | \\p{N}{1,3} | ' '?[^\\s\\p{L}\\p{N}]+[\\r\\n/]* |
    \\s*[\\r\\n]+ | \\s+(?!\\S) | \\s+"""
    pieces, i, n = [], 0, len(text)

    def run(j: int, pred) -> int:
        while j < n and pred(text[j]):
            j += 1
        return j

    while i < n:
        c = text[i]
        if c not in "\r\n" and not _letter(c) and not _number(c) and i + 1 < n \
                and _letter(text[i + 1]):
            j = run(i + 1, _letter)
        elif _letter(c):
            j = run(i, _letter)
        elif _number(c):
            j = i
            while j < n and j - i < 3 and _number(text[j]):
                j += 1
        elif _other(c) or (c == " " and i + 1 < n and _other(text[i + 1])):
            j = run(run(i + (c == " "), _other), lambda ch: ch in "\r\n/")
        else:  # whitespace
            end = run(i, lambda ch: ch in WHITE_SPACE)
            breaks = [p for p in range(i, end) if text[p] in "\r\n"]
            if breaks:
                j = breaks[-1] + 1
            elif end == n or end - 1 == i:
                j = end
            else:
                j = end - 1
        pieces.append(text[i:j])
        i = j
    return pieces


def merge_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """tiktoken's rule: a piece that is a token stays whole; otherwise merge the adjacent pair
    whose concatenation has the lowest rank, leftmost first, until none is a token."""
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best = None
        for k in range(len(parts) - 1):
            r = ranks.get(parts[k] + parts[k + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, k)
        if best is None:
            break
        k = best[1]
        parts[k:k + 2] = [parts[k] + parts[k + 1]]
    return [ranks[p] for p in parts]


def encode(text: str, ranks: dict[bytes, int], eot_id: int) -> list[int]:
    """tiktoken `encode(text, allowed_special='all')` for a tinypython-style encoding."""
    ids: list[int] = []
    for n, segment in enumerate(text.split(EOT)):
        if n:
            ids.append(eot_id)
        for piece in pretokenize(segment):
            ids.extend(merge_piece(piece.encode("utf-8"), ranks))
    return ids


def learn_bpe(texts: list[str], n_merges: int) -> list[tuple[bytes, bytes]]:
    """A plain BPE learner on pretokenized pieces: the most frequent pair each round (ties:
    the smallest pair), merged everywhere."""
    words = Counter(tuple(bytes([b]) for b in p.encode("utf-8"))
                    for t in texts for p in pretokenize(t))
    merges = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, c in words.items():
            for a, b in zip(w[:-1], w[1:], strict=True):
                pairs[a, b] += c
        if not pairs:
            break
        top = max(pairs.values())
        a, b = min(p for p, c in pairs.items() if c == top)
        merges.append((a, b))
        merged: Counter = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges


def bpe_files(merges: list[tuple[bytes, bytes]]) -> tuple[str, str, dict[bytes, int]]:
    """(encoder.json text, vocab.bpe text, ranks) in the GPT-2 data-gym layout; EOT last."""
    def show(t: bytes) -> str:
        return "".join(BYTE_CHARS[b] for b in t)

    ranks = {bytes([b]): i for i, b in enumerate(BYTE_ORDER)}
    for a, b in merges:
        ranks[a + b] = len(ranks)
    encoder = {show(t): r for t, r in ranks.items()}
    encoder[EOT] = len(ranks)
    vocab_bpe = "#version: 0.2\n" + "".join(f"{show(a)} {show(b)}\n" for a, b in merges)
    return json.dumps(encoder), vocab_bpe, ranks


# --- the model -------------------------------------------------------------------------------


def beeg_config(**overrides) -> dict:
    """A small config with the fields their released models set."""
    cfg = {
        "block_size": 16, "vocab_size": 384, "n_layer": 2, "n_head": 4, "d_head": 8,
        "d_model": 32, "d_mlp": 64, "dropout": 0.0, "bias": False, "ln_bias": False,
        "rms_norm": True, "residual_activation_type": "identity", "activation_type": "gelu",
        "afrac": 0.25, "afrac_loctypes": "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,"
        "mlp_neuron,mlp_out", "debug_nans": False, "tied_unembed": False,
        "tokenizer_name": "tinypython_2k", "grad_checkpointing": True,
        "enable_bigram_table": True, "learnable_bigram_table": True, "d_pos_emb": None,
        "dropout_cat_pos_emb": False, "sinusoidal_cat_pos_emb": False,
        "enable_sparse_kernels": False, "flash": True, "sink": True, "bigram_table_rank": None,
    }  # fmt: skip
    cfg.update(overrides)
    return cfg


def random_state_dict(cfg: dict, seed: int = 0, density: float = 0.3) -> dict[str, Tensor]:
    """Their state dict for `cfg`, with weight-sparse random matrices."""
    g = torch.Generator().manual_seed(seed)
    D, V, H = cfg["d_model"], cfg["vocab_size"], cfg["n_head"] * cfg["d_head"]
    Fm = cfg["d_mlp"]

    def mat(*shape: int, scale: float = 0.3) -> Tensor:
        w = torch.randn(*shape, generator=g) * scale
        return w * (torch.rand(*shape, generator=g) < density)

    def gain(d: int) -> Tensor:
        return 1 + 0.1 * torch.randn(d, generator=g)

    sd = {"transformer.wte.weight": mat(V, D), "transformer.wpe.weight": mat(cfg["block_size"], D)}
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"] = gain(D)
        sd[p + "attn.c_attn.weight"] = mat(3 * H, D)
        sd[p + "attn.c_proj.weight"] = mat(D, H)
        if cfg["sink"]:
            sd[p + "attn.attn_imp.sink_logit"] = torch.randn(cfg["n_head"], generator=g)
        sd[p + "ln_2.weight"] = gain(D)
        sd[p + "mlp.c_fc.weight"] = mat(Fm, D)
        sd[p + "mlp.c_proj.weight"] = mat(D, Fm)
        if cfg["bias"]:
            for name, size in (("attn.c_attn", 3 * H), ("attn.c_proj", D), ("mlp.c_fc", Fm),
                               ("mlp.c_proj", D)):
                sd[p + name + ".bias"] = 0.1 * torch.randn(size, generator=g)
    sd["transformer.ln_f.weight"] = gain(D)
    sd["lm_head.weight"] = sd["transformer.wte.weight"] if cfg["tied_unembed"] else mat(V, D)
    sd["final_logits_bias"] = 0.1 * torch.randn(V, generator=g)
    if cfg["enable_bigram_table"]:
        sd["bigram_table"] = 0.1 * torch.randn(V, V, generator=g)
    return sd


def _keep_topk(x: Tensor, cfg: dict, loctype: str) -> Tensor:
    if cfg["afrac"] is None or loctype not in cfg["afrac_loctypes"].split(","):
        return x
    k = int(cfg["afrac"] * x.shape[-1])
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x).scatter(-1, idx, x.gather(-1, idx))


def _rms(x: Tensor, w: Tensor) -> Tensor:
    eps = torch.finfo(x.dtype).eps
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _linear(sd: dict, name: str, x: Tensor) -> Tensor:
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


def forward(sd: dict[str, Tensor], cfg: dict, idx: Tensor) -> Tensor:
    """Their GPT's logits [B, T, V] for tokens [B, T], written out step by step: embeddings
    plus positions, pre-norm blocks with AbsTopK at the `afrac_loctypes`, attention with the
    sink slot prepended (zero key and value, logit = the head's sink), GELU/ReLU MLP, final
    norm, unembedding, logits bias and bigram row."""
    B, T = idx.shape
    nh, dh = cfg["n_head"], cfg["d_head"]
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    act = {"gelu": F.gelu, "relu": F.relu}[cfg["activation_type"]]
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        h = _keep_topk(_rms(x, sd[p + "ln_1.weight"]), cfg, "attn_in")
        q, k, v = _linear(sd, p + "attn.c_attn", h).split(nh * dh, dim=-1)
        q, k, v = (_keep_topk(t, cfg, "attn_" + n) for t, n in ((q, "q"), (k, "k"), (v, "v")))
        q, k, v = (t.view(B, T, nh, dh).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # [B, nh, T, T]
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
        if cfg["sink"]:
            sink = sd[p + "attn.attn_imp.sink_logit"].view(1, nh, 1, 1).expand(B, nh, T, 1)
            probs = torch.cat([sink, scores], -1).softmax(-1)[..., 1:]  # the sink's value is 0
        else:
            probs = scores.softmax(-1)
        y = (probs @ v).transpose(1, 2).reshape(B, T, nh * dh)
        x = x + _keep_topk(_linear(sd, p + "attn.c_proj", y), cfg, "attn_out")
        h = _keep_topk(_rms(x, sd[p + "ln_2.weight"]), cfg, "mlp_in")
        h = _keep_topk(act(_linear(sd, p + "mlp.c_fc", h)), cfg, "mlp_neuron")
        x = x + _keep_topk(_linear(sd, p + "mlp.c_proj", h), cfg, "mlp_out")
    x = _rms(x, sd["transformer.ln_f.weight"])
    logits = x @ sd["lm_head.weight"].T + sd.get("final_logits_bias", 0)
    if cfg["enable_bigram_table"]:
        logits = logits + sd["bigram_table"][idx]
    return logits


def write_model_dir(directory: Path, cfg: dict, sd: dict[str, Tensor], encoder_json: str,
                    vocab_bpe: str) -> Path:
    """Their model directory: beeg_config.json, final_model.pt, encoder.json, vocab.bpe."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "beeg_config.json").write_text(json.dumps(cfg))
    torch.save(sd, directory / "final_model.pt")
    (directory / "encoder.json").write_text(encoder_json)
    (directory / "vocab.bpe").write_text(vocab_bpe)
    return directory
