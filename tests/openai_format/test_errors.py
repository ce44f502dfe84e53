"""Bad input to import-openai / export-openai: a one-line error, nothing written."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest
import torch
import typer
from typer.testing import CliRunner

from sparsecircuits.openai_format.cli import register
from sparsecircuits.openai_format.errors import OpenAIFormatError


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _import(model_dir, out):
    return CliRunner().invoke(_app(), ["import-openai", str(model_dir), "--out", str(out)])


def _edit_config(model_dir, **changes):
    path = model_dir / "beeg_config.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def _edit_weights(model_dir, edit):
    sd = torch.load(model_dir / "final_model.pt", weights_only=True)
    edit(sd)
    torch.save(sd, model_dir / "final_model.pt")


CASES = {
    "missing config": (lambda d: (d / "beeg_config.json").unlink(), "has no beeg_config.json"),
    "missing weights": (lambda d: (d / "final_model.pt").unlink(), "final_model.pt does not exist"),
    "missing encoder": (lambda d: (d / "encoder.json").unlink(), "encoder.json does not exist"),
    "config not json": (lambda d: (d / "beeg_config.json").write_text("{"), "not valid JSON"),
    "unknown field": (lambda d: _edit_config(d, rotary=True), "unknown field 'rotary'"),
    "layernorm": (lambda d: _edit_config(d, rms_norm=False), "rms_norm=False is not supported"),
    "resid topk": (lambda d: _edit_config(d, afrac_loctypes="attn_in,resid_post_attn"),
                   "afrac_loctypes='resid_post_attn'"),
    "cat pos emb": (lambda d: _edit_config(d, d_pos_emb=8), "d_pos_emb=8"),
    "odd mlp": (lambda d: _edit_config(d, d_mlp=40), "d_mlp=40 is not supported"),
    "k of zero": (lambda d: _edit_config(d, afrac=0.01), "keeps 0 of the 32 features"),
    "vocab mismatch": (lambda d: _edit_config(d, vocab_size=400), "the tokenizer has 384 tokens"),
    "shape mismatch": (
        lambda d: _edit_weights(d, lambda sd: sd.update(
            {"transformer.h.1.mlp.c_fc.weight": torch.zeros(65, 32)})),
        "tensor transformer.h.1.mlp.c_fc.weight has shape (65, 32), expected (64, 32)"),
    "missing tensor": (
        lambda d: _edit_weights(d, lambda sd: sd.pop("transformer.h.0.attn.attn_imp.sink_logit")),
        "lacks tensor transformer.h.0.attn.attn_imp.sink_logit"),
    "extra tensor": (
        lambda d: _edit_weights(d, lambda sd: sd.update({"transformer.h.0.attn.rope": torch.ones(2)})),
        "holds tensor transformer.h.0.attn.rope that the config has no place for"),
    "nan": (
        lambda d: _edit_weights(d, lambda sd: sd["lm_head.weight"].__setitem__((0, 0), float("nan"))),
        "unembed.weight holds NaN"),
    "int tensor": (
        lambda d: _edit_weights(d, lambda sd: sd.update(
            {"transformer.ln_f.weight": torch.ones(32, dtype=torch.int64)})),
        "transformer.ln_f.weight has dtype torch.int64"),
    "not weights-only": (
        lambda d: torch.save({"when": datetime.date(2025, 1, 1)}, d / "final_model.pt"),
        "not a weights-only checkpoint"),
    "not a checkpoint": (lambda d: (d / "final_model.pt").write_bytes(b"garbage"),
                         "cannot be read as a torch checkpoint"),
    "not a state dict": (lambda d: torch.save([torch.ones(2)], d / "final_model.pt"),
                         "must hold a dict of tensors"),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_model_directories_are_one_line_errors(make_model_dir, tmp_path, case):
    break_it, message = CASES[case]
    model_dir, _, _ = make_model_dir()
    break_it(model_dir)
    r = _import(model_dir, tmp_path / "out")
    assert isinstance(r.exception, OpenAIFormatError), (r.output, r.exception)
    assert message in str(r.exception) and "\n" not in str(r.exception)
    assert not (tmp_path / "out").exists()


def test_an_existing_checkpoint_survives_a_failed_import(make_model_dir, tmp_path):
    model_dir, _, _ = make_model_dir()
    assert _import(model_dir, tmp_path / "out").exit_code == 0
    before = (tmp_path / "out" / "checkpoint" / "model.safetensors").read_bytes()
    _edit_config(model_dir, rms_norm=False)
    assert isinstance(_import(model_dir, tmp_path / "out").exception, OpenAIFormatError)
    assert (tmp_path / "out" / "checkpoint" / "model.safetensors").read_bytes() == before


def test_the_command_exits_2_with_one_line(make_model_dir, tmp_path):
    model_dir, _, _ = make_model_dir()
    _edit_config(model_dir, mystery=1)
    r = subprocess.run([sys.executable, "-m", "sparsecircuits", "import-openai", str(model_dir),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: beeg_config.json: unknown field 'mystery'")


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path):
    r = CliRunner().invoke(_app(), ["export-openai", str(tmp_path / "nope"), "--out",
                                    str(tmp_path / "x")])
    assert r.exit_code != 0 and "\n" not in str(r.exception)
    assert not (tmp_path / "x").exists()
