"""`sparsecircuits sae ...` as a user runs it: outputs, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from sparsecircuits.checkpoint import write_checkpoint
from sparsecircuits.sae.cli import app
from sparsecircuits.sae.sae_file import SAE_FILE, load_sae

runner = CliRunner()
TINY = ["--k", "8", "--expansion", "4", "--tokens", "1024", "--batch-size", "256",
        "--buffer-windows", "8", "--no-progress"]  # fmt: skip


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparsecircuits", "sae", *map(str, args)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _assert_one_line_error(proc, message):
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def other_model(tiny_loaded, tmp_path_factory):
    """The tiny model with one bias changed: another content hash, same shapes and data."""
    state = {k: v.clone() for k, v in tiny_loaded.model.state_dict().items()}
    state["logits_bias"] += 1.0
    target = tmp_path_factory.mktemp("other") / "checkpoint"
    return write_checkpoint(target, tiny_loaded.config, state, tiny_loaded.tokenizer.to_str(),
                            {"step": 0})  # fmt: skip


def test_train_eval_export_import_through_the_cli(tiny_run, tmp_path):
    out = tmp_path / "sae"
    r = runner.invoke(app, ["train", str(tiny_run), "--at", "0.resid_post", "--out", str(out),
                            *TINY])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "topk SAE d_in 32 d_sae 128 k 8 at 0.resid_post, 1,024 tokens" in r.output
    r = runner.invoke(app, ["eval", str(out), "--windows", "4"])
    assert r.exit_code == 0, r.output
    assert "CE loss recovered" in r.output and "explained variance" in r.output
    doc = json.loads((out / "eval.json").read_text())  # strict JSON: no NaN literals
    assert doc["format"] == "sparsecircuits.sae-eval" and doc["location"] == "0.resid_post"
    assert doc["metrics"]["tokens"] == 4 * 64 and doc["metrics"]["l0"] <= 8
    assert (out / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["export-saelens", str(out), "--out", str(tmp_path / "lens")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import-saelens", str(tmp_path / "lens"), "--out",
                            str(tmp_path / "back"), "--checkpoint", str(tiny_run)])  # fmt: skip
    assert r.exit_code == 0, r.output
    back, orig = load_sae(tmp_path / "back"), load_sae(out)
    assert all(torch.equal(t, orig.sae.tensors()[n]) for n, t in back.sae.tensors().items())


def test_unknown_location(tiny_run, tmp_path):
    proc = _cli("train", tiny_run, "--at", "9.resid_post", "--out", tmp_path / "s", *TINY)
    _assert_one_line_error(proc, "unknown location '9.resid_post'")
    assert not (tmp_path / "s").exists()


def test_k_not_below_d_sae(tiny_run, tmp_path):
    proc = _cli("train", tiny_run, "--at", "1.resid_mid", "--out", tmp_path / "s",
                *TINY, "--k", "128")  # fmt: skip
    _assert_one_line_error(proc, "k=128 must be smaller than d_sae=128")


def test_sae_of_another_model(tiny_sae, other_model):
    proc = _cli("eval", tiny_sae, "--checkpoint", other_model, "--windows", "2")
    _assert_one_line_error(proc, "was trained on another model")
    assert not (tiny_sae / "eval.json").exists()


def test_sae_of_another_location(tiny_sae):
    proc = _cli("eval", tiny_sae, "--at", "0.resid_mid", "--windows", "2")
    _assert_one_line_error(proc, "was trained at 1.resid_mid, not 0.resid_mid")


def test_corrupt_sae_file(tiny_sae, tmp_path):
    (tmp_path / SAE_FILE).write_bytes((tiny_sae / SAE_FILE).read_bytes()[:100])
    proc = _cli("eval", tmp_path, "--windows", "2")
    _assert_one_line_error(proc, "is not a readable safetensors file")
