"""Import an OpenAI circuit-sparsity model directory as our checkpoint, and export ours back.

    MODEL_DIR/beeg_config.json   their GPTConfig           -> config.json (run_config.model)
    MODEL_DIR/final_model.pt     their state dict          -> model.safetensors
    encoder.json + vocab.bpe     tinypython_2k BPE files   -> tokenizer.json

docs/openai.md has the field and tensor mapping and what is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from sparsecircuits.checkpoint import CHECKPOINT_DIR, check_tensor, load_checkpoint
from sparsecircuits.checkpoint import write_checkpoint as write_our_checkpoint
from sparsecircuits.config import RunConfig, config_from_dict
from sparsecircuits.errors import CheckpointError, ConfigError
from sparsecircuits.fileformat import atomic_write, atomic_write_text, write_json
from sparsecircuits.model.gpt import GPT
from sparsecircuits.openai_format import bpe as bpe_files
from sparsecircuits.openai_format.config_map import (
    RMSNORM_EPS,
    beeg_from_model_config,
    check_k_positive,
    model_config_from_beeg,
)
from sparsecircuits.openai_format.errors import OpenAIFormatError
from sparsecircuits.openai_format.weights import (
    has_biases,
    ours_from_theirs,
    read_state_dict,
    theirs_from_ours,
)

CONFIG_FILE = "beeg_config.json"
WEIGHTS_FILE = "final_model.pt"
ENCODER_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"
SOURCE_FORMAT = "openai/circuit_sparsity"


@dataclass
class ImportResult:
    checkpoint: Path
    parameters: int
    nonzeros: int
    notes: list[str]


def _read_beeg(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise OpenAIFormatError(f"{model_dir} has no {CONFIG_FILE} (not an OpenAI model directory)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OpenAIFormatError(f"{path} is not valid JSON: {exc}") from None


def import_openai(
    model_dir: Path, out: Path, tokenizer_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ImportResult:  # fmt: skip
    """Write `out/checkpoint` from their model directory; OpenAIFormatError on bad input.

    `overrides` are dotted RunConfig keys for the non-model sections (`data.sources`: the
    corpus used for pruning's mean ablation and for `eval`). Nothing is written unless every
    check passes.
    """
    model_dir, notes = Path(model_dir), []
    if not model_dir.is_dir():
        raise OpenAIFormatError(f"model directory {model_dir} does not exist")
    doc = _read_beeg(model_dir)
    model_cfg, bias = model_config_from_beeg(doc)
    check_k_positive(model_cfg)
    tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else model_dir
    bpe = bpe_files.read_bpe_files(tok_dir / ENCODER_FILE, tok_dir / MERGES_FILE)
    bpe = bpe_files.with_special(bpe, model_cfg.vocab_size)
    if bpe.vocab_size != model_cfg.vocab_size:
        raise OpenAIFormatError(f"the tokenizer has {bpe.vocab_size} tokens but beeg_config.json "
                                f"has vocab_size {model_cfg.vocab_size}")
    tokenizer_json = bpe_files.hf_tokenizer_json(bpe)

    sd = read_state_dict(model_dir / WEIGHTS_FILE)
    wpe = sd.get("transformer.wpe.weight")
    if isinstance(wpe, Tensor) and not bool(wpe.any()):
        model_cfg = replace(model_cfg, positional="none")  # their zero wpe adds nothing
        notes.append("wpe is all zeros: imported without positional embeddings")
    if "lm_head.weight" in sd and "transformer.wte.weight" in sd and torch.equal(
            sd["lm_head.weight"], sd["transformer.wte.weight"]):
        notes.append("tied unembedding: embed and unembed are stored as two equal tensors")
    values = _run_config_dict(model_cfg, overrides or {})
    try:
        cfg = config_from_dict(values)
    except ConfigError as exc:
        raise OpenAIFormatError(f"the imported config is not valid: {exc}") from None

    with torch.device("meta"):  # names and shapes only, no memory
        expected = GPT(cfg.model).state_dict()
    state: dict[str, Tensor] = {}
    for name, tensor in ours_from_theirs(sd, cfg.model, bias):
        if name not in expected:  # a mapping bug, not bad input
            raise AssertionError(f"mapped tensor {name} is not a parameter of our GPT")
        try:
            check_tensor(tensor, name, expected[name].shape, model_dir / WEIGHTS_FILE)
        except CheckpointError as exc:
            raise OpenAIFormatError(str(exc)) from None
        # A tied unembedding arrives as the embedding's own tensor; safetensors stores each
        # name once, so it gets its own copy.
        shared = name == "unembed.weight" and tensor.data_ptr() == state["embed.weight"].data_ptr()
        state[name] = tensor.clone() if shared else tensor.contiguous()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise AssertionError(f"the mapping left {missing[0]} unset")
    del sd
    meta = {"step": 0, "imported_from": {"format": SOURCE_FORMAT, "path": str(model_dir),
                                         "beeg_config": doc}}
    target = write_our_checkpoint(Path(out) / CHECKPOINT_DIR, cfg, state, tokenizer_json, meta)
    params = sum(t.numel() for t in state.values())
    nonzeros = sum(int(torch.count_nonzero(t)) for t in state.values())
    return ImportResult(target, params, nonzeros, notes)


def _run_config_dict(model_cfg, overrides: dict[str, Any]) -> dict[str, Any]:
    values = RunConfig(model=model_cfg).to_dict()
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if section == "model" or section not in values or not key:
            raise OpenAIFormatError(f"--set {dotted}: only data.*, train.*, sparsity.* and "
                                    "optim.* keys can be set (the model comes from their config)")
        values[section][key] = value
    return values


def export_openai(checkpoint: Path, out: Path) -> list[str]:
    """Write their four files for our checkpoint into `out`; returns notes for the user."""
    loaded = load_checkpoint(checkpoint)
    cfg, notes = loaded.config.model, []
    vocab = bpe_files.export_bpe_files(loaded.tokenizer)
    if vocab.new_id != list(range(len(vocab.new_id))):
        notes.append("token ids renumbered to tiktoken ranks (weights permuted to match)")
    reimported = Tokenizer.from_str(_reimported_tokenizer_json(vocab))
    if loaded.tokenizer.to_str() != reimported.to_str():
        notes.append("their code splits text with tinypython's regex, not this tokenizer's: "
                     "some strings encode differently (docs/openai.md)")
    if cfg.norm_eps != RMSNORM_EPS:
        notes.append(f"norm_eps {cfg.norm_eps:g} becomes their RMSNorm's {RMSNORM_EPS:.3g}: "
                     "logits differ slightly")
    state = {k: v.detach() for k, v in loaded.model.state_dict().items()}
    state = _permute_vocab(state, vocab.new_id)
    tied = torch.equal(state["embed.weight"], state["unembed.weight"])
    bias = has_biases(state)
    beeg = beeg_from_model_config(cfg, bias=bias, tied=tied)
    theirs = theirs_from_ours(state, cfg, bias=bias, tied=tied)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, beeg, indent=2)
    atomic_write(out / WEIGHTS_FILE, lambda f: torch.save(theirs, f))
    atomic_write_text(out / ENCODER_FILE, vocab.encoder_json)
    atomic_write_text(out / MERGES_FILE, vocab.vocab_bpe)
    return notes


def _reimported_tokenizer_json(vocab: bpe_files.ExportedVocab) -> str:
    """The tokenizer.json an import of the exported files would write."""
    encoder = json.loads(vocab.encoder_json)
    ranks = {bpe_files.to_bytes(k, "export"): v for k, v in encoder.items()
             if k not in bpe_files.SPECIAL_TOKENS}
    special = {k: v for k, v in encoder.items() if k in bpe_files.SPECIAL_TOKENS}
    merges = tuple(tuple(line.split(" ")) for line in vocab.vocab_bpe.split("\n")[1:-1])
    return bpe_files.hf_tokenizer_json(bpe_files.BPE(ranks, special, merges))


def _permute_vocab(state: dict[str, Tensor], new_id: list[int]) -> dict[str, Tensor]:
    """Move row/column i of every vocabulary-indexed tensor to new_id[i]."""
    if new_id == list(range(len(new_id))):
        return state
    index = torch.tensor(new_id)
    out = dict(state)
    for name in ("embed.weight", "unembed.weight", "logits_bias"):
        out[name] = torch.empty_like(state[name]).index_copy_(0, index, state[name])
    if "bigram" in state:
        rows = torch.empty_like(state["bigram"]).index_copy_(0, index, state["bigram"])
        out["bigram"] = torch.empty_like(rows).index_copy_(1, index, rows)
    return out
