"""scripts/check_readme.py: README commands are extracted, parsed by the real CLI, and run."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_readme", REPO / "scripts" / "check_readme.py")
check_readme = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_readme", check_readme)  # dataclasses look their module up
_spec.loader.exec_module(check_readme)

FENCE = "```"
EXTRACT_FIXTURE = f"""
# Title

{FENCE}bash
sparsecircuits tasks list   # a comment
.venv/bin/sparsecircuits prune models/demo --task single_double_quote \\
    --loss two_way
{FENCE}

<!-- readme-check: parse-only -->

{FENCE}console
$ sparsecircuits tasks eval models/demo
task  loss
$ sparsecircuits eval models/demo
{FENCE}

{FENCE}
$ sparsecircuits sample models/demo
output line
{FENCE}

<!-- readme-check: skip -->
{FENCE}python
print("hi")
{FENCE}

Prose resets nothing: the marker applied to the block right after it only.
{FENCE}text
not a command
{FENCE}
"""


def test_extract_reads_blocks_continuations_prompts_and_markers() -> None:
    snippets = check_readme.extract(EXTRACT_FIXTURE)
    got = [(s.kind, s.text, s.mode) for s in snippets]
    assert got == [
        ("shell", "sparsecircuits tasks list   # a comment", "default"),
        (
            "shell",
            ".venv/bin/sparsecircuits prune models/demo --task single_double_quote --loss two_way",
            "default",
        ),
        ("shell", "sparsecircuits tasks eval models/demo", "parse-only"),
        ("shell", "sparsecircuits eval models/demo", "parse-only"),
        ("shell", "sparsecircuits sample models/demo", "default"),
        ("python", 'print("hi")', "skip"),
    ]
    assert snippets[0].line == 5


def test_split_commands_handles_and_lists_and_redirections() -> None:
    assert check_readme.split_commands("a x && b 'y z' > out.txt 2>&1") == [
        ["a", "x"],
        ["b", "y z"],
    ]


@pytest.mark.parametrize(
    ("args", "path", "error"),
    [
        (["tasks", "eval", "models/demo", "--n", "4"], ("tasks", "eval"), None),
        (["train", "-c", "demo", "--set", "train.steps=3"], ("train",), None),
        (["prune", "models/demo", "--bogus"], ("prune",), "No such option"),
        (["prune", "--task", "x"], ("prune",), "Missing argument"),
        (["tasks", "evl", "models/demo"], ("tasks",), "No such command"),
        (["eval", "models/demo", "--batches", "many"], ("eval",), "Invalid value for '--batches'"),
        (["report", "--help"], ("report",), None),
    ],
)
def test_parse_cli_uses_the_real_parser(args, path, error) -> None:
    got_path, got_error = check_readme.parse_cli(args)
    assert got_path == path
    if error is None:
        assert got_error is None
    else:
        assert got_error is not None and error.lower() in got_error.lower()


RUN_FIXTURE = f"""
{FENCE}bash
sparsecircuits tasks list
{FENCE}

{FENCE}bash
source .venv/bin/activate
sparsecircuits tasks show single_double_quote --n 1
sparsecircuits tasks eval models/demo --tasks single_double_quote --n 8 \\
    --json out/tasks.json && test -s out/tasks.json
sparsecircuits train -c demo --out runs/demo
.venv/bin/sparsecircuits prune models/demo --task single_double_quote --bogus
python benchmarks/no_such_benchmark.py
{FENCE}

<!-- readme-check: fails -->
{FENCE}console
$ sparsecircuits tasks eval runs/demo
error: checkpoint runs/demo does not exist
{FENCE}

<!-- readme-check: typo -->
{FENCE}bash
sparsecircuits tasks list
{FENCE}
"""


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "activate").exists(), reason="needs .venv")
def test_checker_runs_quick_commands_and_parses_slow_ones(tmp_path, monkeypatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(RUN_FIXTURE)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    outcomes = check_readme.check_readme(readme, timeout=300, out=out)
    by_line = [(o.status, o.snippet.text.split()[0:3], o.detail) for o in outcomes]
    statuses = [o.status for o in outcomes]
    assert statuses == ["FAIL", "EXISTS", "RUN", "RUN", "PARSE", "FAIL", "FAIL", "RUN", "FAIL"]
    assert "not on PATH" in outcomes[0].detail, by_line
    assert "No such option" in outcomes[5].detail
    assert "does not exist in the repository" in outcomes[6].detail
    assert "failed as marked" in outcomes[7].detail
    assert "unknown marker" in outcomes[8].detail
    # Commands ran in a temporary directory, never here or in the repository.
    assert not (tmp_path / "out").exists() and not (REPO / "out").exists()
    assert not (tmp_path / "runs").exists()
    assert out.getvalue().strip().endswith("9 checked, 4 failed")


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "activate").exists(), reason="needs .venv")
@pytest.mark.parametrize("page", ["README.md", "docs/usage.md", "docs/sae.md"])
def test_every_readme_command_works(page: str) -> None:
    """The README and the reference pages: every command runs, or parses where marked/slow."""
    out = io.StringIO()
    outcomes = check_readme.check_readme(REPO / page, timeout=600, out=out)
    assert not [o for o in outcomes if o.status == "FAIL"], out.getvalue()


def test_a_steer_without_effect_is_caught() -> None:
    same = (
        "--- without intervention ---\nx = 1\n--- with 0.mlp.post_act.3 scaled by -1 ---\nx = 1\n"
    )
    differs = same.replace("x = 1\n", "x = 2\n", 1)
    assert check_readme._steer_without_effect(same)
    assert not check_readme._steer_without_effect(differs)
