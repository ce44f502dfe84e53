"""Every `--help` page reads like a conventional CLI (see src/sparsecircuits/clihelp.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from sparsecircuits import cli
from sparsecircuits.clihelp import plain_type_name

# Typer's annotation labels that must not leak into help: `<bool>`, `<list[str]>`, ...
ANNOTATION_LABEL = re.compile(r"<(bool|str|int|float|path|list\[\w+\])>")


def _command_paths() -> list[tuple[str, ...]]:
    if "train" not in {c.name for c in cli.app.registered_commands}:
        cli._mount()
    root = typer.main.get_command(cli.app)
    paths: list[tuple[str, ...]] = [()]

    def walk(command, prefix: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def _help(path: tuple[str, ...], columns: int) -> str:
    result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_has_the_commands_the_readme_names() -> None:
    paths = {" ".join(p) for p in _command_paths()}
    for name in ["train", "prune", "serve", "report", "steer", "tasks eval", "sae train"]:
        assert name in paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "root")
def test_help_has_no_annotation_types_and_a_plain_usage_line(path: tuple[str, ...]) -> None:
    text = _help(path, columns=80)
    assert not ANNOTATION_LABEL.search(text), text
    usage = [line for line in text.splitlines() if "Usage:" in line]
    assert len(usage) == 1, text
    assert "{" not in usage[0] and "}" not in usage[0], usage[0]
    # A flag takes no value, so the --help row names no type.
    help_row = next(line for line in text.splitlines() if "--help" in line)
    assert "BOOLEAN" not in help_row, help_row
    # No default is an absolute path of the machine the help was printed on.
    assert str(Path.home()) not in text


def test_required_argument_reads_as_uppercase_name_in_usage() -> None:
    usage = next(line for line in _help(("prune",), 100).splitlines() if "Usage:" in line)
    assert usage.split("Usage:")[1].split() == [
        "sparsecircuits",
        "prune",
        "[OPTIONS]",
        "CHECKPOINT",
    ]


def test_cache_dir_default_is_shown_whole_on_a_narrow_terminal() -> None:
    text = " ".join(_help(("prune",), 80).replace("│", " ").split())
    assert "(default ~/.cache/sparsecircuits/means)" in text


@pytest.mark.parametrize(
    ("label", "plain"),
    [
        ("<str>", "TEXT"),
        ("<list[str]>", "TEXT"),
        ("<int>", "INTEGER"),
        ("<path>", "PATH"),
        ("<mean|zero>", "[mean|zero]"),
        ("<int range>", "INTEGER"),
        ("<float>...", "FLOAT..."),
    ],
)
def test_plain_type_names(label: str, plain: str) -> None:
    assert plain_type_name(label) == plain
