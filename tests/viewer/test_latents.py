"""SAE latents in the viewer: the latent page, its interventions, `steer --sae`, bad input.

The SAE is trained here on the tiny model (12 steps, d_sae 128), so every number below comes
from real components; expected values are recomputed independently from the model and SAE.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sparsecircuits.checkpoint import load_checkpoint
from sparsecircuits.cli import _mount, app
from sparsecircuits.errors import SAEError, SparseCircuitsError
from sparsecircuits.sae.activations import record
from sparsecircuits.sae.config import SAETrainConfig
from sparsecircuits.sae.sae_file import SAE_FILE, load_sae, save_sae
from sparsecircuits.viewer.app import create_app
from sparsecircuits.viewer.latents import LatentSource
from sparsecircuits.viewer.node_stats import StatsConfig, val_tokens
from sparsecircuits.viewer.workspace import Workspace
from tests.viewer.conftest import TASK

TINY_SAE = SAETrainConfig(location="1.resid_mid", k=8, expansion=4, tokens=256 * 12,
                          batch_size=256, buffer_windows=8, dead_tokens=1024, warmup_steps=3,
                          checkpoint_every=5)  # fmt: skip
WINDOWS = 8


def train_tiny_sae(checkpoint: Path, out: Path) -> Path:
    """A trained tiny SAE directory of the model at `checkpoint`."""
    from sparsecircuits.sae.trainer import train_sae

    train_sae(load_checkpoint(checkpoint), TINY_SAE, out, progress=False)
    return out


def altered_sae(sae_dir: Path, out: Path, **changes) -> Path:
    """A copy of the SAE whose document says something else (another model or location)."""
    handle = load_sae(sae_dir)
    doc = {**handle.meta, **changes}
    out.mkdir(parents=True, exist_ok=True)
    save_sae(out, handle.sae, doc)
    return out


@pytest.fixture(scope="module")
def sae_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    return train_tiny_sae(tiny_checkpoint, tmp_path_factory.mktemp("sae") / "tiny-sae")


@pytest.fixture(scope="module")
def other_model_sae(sae_dir, tmp_path_factory) -> Path:
    handle = load_sae(sae_dir)
    model = {**handle.meta["model"], "content_hash": "0" * 64}
    return altered_sae(sae_dir, tmp_path_factory.mktemp("other") / "other-model", model=model)


@pytest.fixture(scope="module")
def other_location_sae(sae_dir, tmp_path_factory) -> Path:
    # 0.mlp.post_act is 4 x d_model wide: an SAE of the 32-wide residual cannot be read there
    return altered_sae(sae_dir, tmp_path_factory.mktemp("loc") / "other-location",
                       location="0.mlp.post_act")


@pytest.fixture(scope="module")
def client(artifacts, sae_dir, other_model_sae, other_location_sae):
    ws = Workspace(artifacts, StatsConfig(windows=WINDOWS))
    source = LatentSource([sae_dir, other_model_sae, other_location_sae])
    with TestClient(create_app(ws, latents=source), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def expected(tiny_checkpoint, sae_dir):
    """Every latent on the viewer's windows, computed here without the viewer's code."""
    loaded = load_checkpoint(tiny_checkpoint)
    handle = load_sae(sae_dir)
    tokens = val_tokens(loaded, WINDOWS)
    with torch.no_grad():
        z = handle.sae.encode(record(loaded.model, tokens, handle.location).float())
    return {"loaded": loaded, "sae": handle, "z": z}  # z: [N, T, d_sae]


@pytest.fixture(scope="module")
def busiest(expected) -> int:
    """The latent firing on most tokens (chosen from the data: which latents live depends on
    the training run)."""
    return int((expected["z"] > 0).flatten(0, 1).sum(0).argmax())


def test_the_sae_list_names_each_loaded_sae(client):
    listed = {s["id"]: s for s in client.get("/api/saes").json()}
    assert set(listed) == {"tiny-sae", "other-model", "other-location"}
    assert listed["tiny-sae"]["location"] == "1.resid_mid" and listed["tiny-sae"]["d_sae"] == 128


def test_latent_page_matches_the_sae_on_the_corpus(client, expected, busiest):
    r = client.get("/api/latent", params={"sae": "tiny-sae", "latent": busiest, "task": TASK,
                                          "n": 16})
    assert r.status_code == 200, r.text
    p = r.json()
    z = expected["z"][..., busiest]
    assert p["max"] == pytest.approx(float(z.max()), rel=1e-3)
    assert p["corpus"]["active_fraction"] == pytest.approx(float((z > 0).double().mean()),
                                                           rel=1e-3)
    top = p["corpus"]["top"]
    assert top, "the busiest latent has top snippets"
    for snip in top:
        assert len(snip["tokens"]) == len(snip["acts"])
        assert snip["acts"][snip["focus"]] == pytest.approx(snip["value"], rel=1e-3)
        assert snip["value"] > 0
    assert [s["value"] for s in top] == sorted((s["value"] for s in top), reverse=True)
    for snip in p["corpus"]["bottom"]:  # encoder pre-activations: below zero by construction
        assert snip["value"] < 0
    density = p["density"]
    assert sum(density["counts"]) == density["latents"] - density["dead"] == 128 - density["dead"]
    assert density["this_density"] == pytest.approx(float((z > 0).double().mean()), rel=1e-3)
    classes = p["task"]["classes"]
    assert sum(len(c["values"]) for c in classes) == p["task"]["n"] == 16


def test_logit_effect_is_the_decoder_direction_through_the_unembedding(client, expected, busiest):
    p = client.get("/api/latent", params={"sae": "tiny-sae", "latent": busiest}).json()
    model, sae = expected["loaded"].model, expected["sae"].sae
    with torch.no_grad():
        effect = model.unembed.weight @ (model.final_norm.weight * sae.W_dec[busiest])
    strings = [t["token"] for t in p["logit_effect"]["up"]]
    order = effect.argsort(descending=True)[: len(strings)].tolist()
    decoded = [expected["loaded"].tokenizer.decode([i]) for i in order]
    assert strings[0] == decoded[0]
    assert p["logit_effect"]["up"][0]["value"] > 0 > p["logit_effect"]["down"][0]["value"]


def test_intervening_on_a_latent_moves_the_task_only_when_the_latent_changes(client, busiest):
    body = {"sae": "tiny-sae", "latent": busiest, "task": TASK, "n": 16}
    same = client.post("/api/latent/intervene", json={**body, "op": "scale", "value": 1.0})
    assert same.status_code == 200, same.text
    same = same.json()
    assert same["intervened"]["task_loss"] == pytest.approx(same["baseline"]["task_loss"],
                                                            abs=1e-5)
    big = client.post("/api/latent/intervene", json={**body, "op": "clamp_max", "value": 200})
    assert big.status_code == 200, big.text
    big = big.json()
    page = client.get("/api/latent", params={"sae": "tiny-sae", "latent": busiest}).json()
    assert big["interventions"][0]["value"] == pytest.approx(200 * page["max"], rel=1e-3)
    assert abs(big["intervened"]["task_loss"] - big["baseline"]["task_loss"]) > 1e-3
    zero = client.post("/api/latent/intervene", json={**body, "op": "ablate"}).json()
    assert zero["interventions"][0]["op"] == "ablate_zero"


def test_latent_steering_changes_nothing_at_scale_one_and_something_when_clamped(
    client, busiest
):
    body = {"sae": "tiny-sae", "latent": busiest, "prompt": "x = '", "tokens": 8}
    same = client.post("/api/latent/steer", json={**body, "op": "scale", "value": 1.0}).json()
    assert same["steered"] == same["plain"] and same["plain"].startswith("x = '")
    big = client.post("/api/latent/steer", json={**body, "op": "clamp_max", "value": 500})
    assert big.status_code == 200, big.text
    assert big.json()["steered"] != big.json()["plain"]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"sae": "tiny-sae", "latent": 128}, 400, "latent 128 is out of range"),
        ({"sae": "tiny-sae", "latent": -1}, 400, "out of range"),
        ({"sae": "nope", "latent": 1}, 404, "unknown SAE 'nope'"),
        ({"sae": "other-model", "latent": 1, "model": "runs/tiny"}, 400,
         "trained on another model"),
        ({"sae": "other-model", "latent": 1}, 404, "no model under the artifacts directory"),
        ({"sae": "other-location", "latent": 1}, 400, "0.mlp.post_act"),
    ],
)
def test_bad_latent_requests_are_one_line_4xx(client, params, status, message):
    r = client.get("/api/latent", params=params)
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and "\n" not in r.json()["error"]


def test_bad_intervention_values_are_refused(client):
    r = client.post("/api/latent/intervene", json={"sae": "tiny-sae", "latent": 1, "task": TASK,
                                                   "op": "clamp_max"})
    assert r.status_code == 400 and "clamp_max needs a finite factor" in r.json()["error"]
    r = client.post("/api/latent/intervene", json={"sae": "tiny-sae", "latent": 1, "task": TASK,
                                                   "op": "double"})
    assert r.status_code == 422


def test_a_corrupt_sae_is_refused_when_loaded(sae_dir, tmp_path):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    data = (sae_dir / SAE_FILE).read_bytes()
    (bad / SAE_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(SAEError, match="not a readable safetensors file"):
        LatentSource([bad])


# ---------------------------------------------------------------- CLI
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def mounted():
    if "steer" not in {c.name for c in app.registered_commands}:
        _mount()


def test_steer_with_sae_prints_both_generations(tiny_checkpoint, sae_dir, busiest):
    args = ["steer", str(tiny_checkpoint), "--sae", str(sae_dir), "--latent", str(busiest),
            "--prompt", "x = '", "--tokens", "6"]
    same = runner.invoke(app, [*args, "--scale", "1"])
    assert same.exit_code == 0, same.output
    plain, header, steered = _generations(same.output)
    assert header == f"latent {busiest} of 1.resid_mid scaled by 1.0"
    assert plain == steered and plain.startswith("x = '")  # scaling by 1 changes nothing
    clamped = runner.invoke(app, [*args, "--clamp-max", "500", "--windows", str(WINDOWS)])
    assert clamped.exit_code == 0, clamped.output
    plain, header, steered = _generations(clamped.output)
    assert "clamped to 500x its max" in header and plain != steered


def _generations(output: str) -> tuple[str, str, str]:
    """(plain, what the intervention was, steered) from steer's output."""
    head, rest = output.split("--- without intervention ---\n", 1)
    assert head == ""
    plain, rest = rest.split("\n--- with ", 1)
    header, steered = rest.split(" ---\n", 1)
    return plain, header, steered.removesuffix("\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--latent", "128", "--scale", "2"], "latent 128 is out of range"),
        (["--latent", "1"], "exactly one of"),
        (["--latent", "1", "--scale", "2", "--node", "0.mlp.post_act.1"], "not both"),
        (["--latent", "1", "--ablate", "mean"], "only be zero-ablated"),
        (["--scale", "2"], "go together"),
    ],
)
def test_steer_with_sae_rejects_bad_requests(tiny_checkpoint, sae_dir, extra, message):
    result = runner.invoke(app, ["steer", str(tiny_checkpoint), "--sae", str(sae_dir),
                                 "--prompt", "x", *extra])  # fmt: skip
    assert isinstance(result.exception, SparseCircuitsError), result.output
    assert message in str(result.exception)


@pytest.mark.parametrize("which", ["other_model_sae", "other_location_sae", "corrupt"])
def test_a_mismatched_or_corrupt_sae_is_one_line_and_exit_code_2(
    request, tiny_checkpoint, sae_dir, tmp_path, which
):
    if which == "corrupt":
        path = tmp_path / SAE_FILE
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
        message = "not a readable safetensors file"
    else:
        path = request.getfixturevalue(which)
        message = "trained on another model" if which == "other_model_sae" else "0.mlp.post_act"
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecircuits", "steer", str(tiny_checkpoint), "--sae",
         str(path), "--latent", "1", "--scale", "2", "--prompt", "x"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_sae_steer_and_steer_with_sae_are_one_implementation(tiny_checkpoint, sae_dir):
    common = ["--latent", "3", "--clamp", "40", "--prompt", "def f(x):", "--tokens", "5"]
    a = runner.invoke(app, ["steer", str(tiny_checkpoint), "--sae", str(sae_dir), *common])
    b = runner.invoke(app, ["sae", "steer", str(sae_dir), "--checkpoint", str(tiny_checkpoint),
                            *common])  # fmt: skip
    assert a.exit_code == b.exit_code == 0, a.output + b.output
    assert a.output == b.output


def test_serve_refuses_a_corrupt_sae_before_serving(artifacts, tmp_path):
    (tmp_path / SAE_FILE).write_bytes(b"not safetensors")
    result = runner.invoke(app, ["serve", "--artifacts", str(artifacts), "--sae",
                                 str(tmp_path)])  # fmt: skip
    assert isinstance(result.exception, SAEError), result.output
