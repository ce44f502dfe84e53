"""Check that every shell command (and Python snippet) in a README works as written.

    .venv/bin/python scripts/check_readme.py [README.md] [--parse-only] [--keep] [--timeout S]

What is checked:
- Fenced blocks tagged bash, sh, shell or console, and untagged blocks: in bash/sh/shell
  blocks every line is a command (a trailing `\\` joins the next line, `#` starts a comment);
  in console and untagged blocks only lines starting with `$ ` are commands (the rest is
  output). Fenced python blocks are snippets, run with the venv's python.
- `sparsecircuits ...`, `.venv/bin/sparsecircuits ...`, `python -m sparsecircuits ...` and
  `torchrun ... -m sparsecircuits ...` are checked against the real CLI. Quick subcommands
  (`tasks list/show/eval`, `eval`, `sample`, `steer`, `report`, anything with `--help`) run for
  real; the rest (`train`, `prune`, `experiment`, `export`, `sae`, ...) are parsed by the real
  click parser (subcommand resolved, arguments parsed and converted, nothing invoked). `serve`
  never runs (it does not return).
- Commands run in order in one fresh temporary directory that holds a copy of `models/` and a
  `.venv` link to this checkout's, so a README that writes `circuits/...` in one command can read
  it in the next, and nothing is ever written into the repository. Caches under `~/.cache`
  are shared with the user's.
- A bare `sparsecircuits` must follow a `source .venv/bin/activate` somewhere earlier in the
  README: the set-up command does not put it on PATH (the checker removes this checkout's
  `.venv/bin` from PATH so the README's own activation is what counts).
- A `steer` that prints the same text with and without its intervention fails (it shows nothing).
- `bash scripts/X.sh`, `python benchmarks/X.py`, `python scripts/X.py`: the file must exist
  (they are too long to run here). Other programs (git, cd, open, ...) are listed, not run.

Marking a block (an HTML comment on its own line right before the fence; blank lines between
are fine; it is invisible on GitHub):

    <!-- readme-check: parse-only -->   parse every command, run none (a slow `tasks eval`)
    <!-- readme-check: run -->          run every command, even `train`/`prune` (cheap settings)
    <!-- readme-check: skip -->         check nothing in this block (sample output, another
                                        machine's commands)
    <!-- readme-check: fails -->        run every command and expect each to fail (exit != 0):
                                        a block that shows an error message on purpose

Exit code 0 when everything passed, 1 otherwise; one line per command either way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!--\s*readme-check:\s*([\w-]+)\s*-->")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGS = {"bash", "sh", "shell", "console", "shell-session", ""}
PROMPT_ONLY_LANGS = {"console", "shell-session", ""}
# Subcommands quick enough to run on models/demo in a test (by their command path).
RUN_BY_DEFAULT = {
    ("tasks", "list"),
    ("tasks", "show"),
    ("tasks", "eval"),
    ("eval",),
    ("sample",),
    ("steer",),
    ("report",),
}
NEVER_RUN = {("serve",)}  # a server: it does not return
SHELL_OPERATORS = {"&&", "||", ";", "|"}
MODES = {"default", "parse-only", "run", "skip", "fails"}


@dataclass
class Snippet:
    """One command line (or Python block) of the README and where it came from."""

    line: int
    text: str
    kind: str  # "shell" or "python"
    mode: str = "default"  # the block's marker: one of MODES


@dataclass
class Outcome:
    snippet: Snippet
    status: str  # RUN, PARSE, EXISTS, SKIP, FAIL
    detail: str = ""
    program: list[str] = field(default_factory=list)


def extract(markdown: str) -> list[Snippet]:
    """The commands and Python snippets of a README, in reading order, with their markers."""
    snippets: list[Snippet] = []
    lines = markdown.splitlines()
    mode = "default"
    i = 0
    while i < len(lines):
        marker = MARKER.search(lines[i])
        if marker:
            mode = marker.group(1)
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                mode = "default"  # a marker applies only to the block right after it
            i += 1
            continue
        indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
        body_start = i + 1
        j = body_start
        while j < len(lines) and not lines[j].strip().startswith(ticks[0] * len(ticks)):
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[body_start:j]
        ]
        if lang in ("python", "py"):
            snippets.append(Snippet(body_start + 1, "\n".join(body), "python", mode))
        elif lang in SHELL_LANGS:
            snippets.extend(_shell_lines(body, body_start + 1, lang in PROMPT_ONLY_LANGS, mode))
        mode = "default"
        i = j + 1
    return snippets


def _shell_lines(body: list[str], first_line: int, prompt_only: bool, mode: str) -> list[Snippet]:
    out: list[Snippet] = []
    k = 0
    while k < len(body):
        raw, number = body[k], first_line + k
        k += 1
        stripped = raw.strip()
        if prompt_only:
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:].strip()
        if not stripped or stripped.startswith("#"):
            continue
        while stripped.endswith("\\") and k < len(body):
            stripped = stripped[:-1].rstrip() + " " + body[k].strip()
            k += 1
        out.append(Snippet(number, stripped, "shell", mode))
    return out


def split_commands(text: str) -> list[list[str]] | str:
    """Shell words of each `&&`/`;`-joined command, or an error message."""
    try:
        # Operators are recognised only as separate words (`a && b`, not `a&&b`): enough for a
        # README, and a quoted `>` or `|` inside an argument stays part of it.
        lexer = shlex.shlex(text, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError as exc:
        return f"cannot split into shell words: {exc}"
    commands: list[list[str]] = [[]]
    redirect_target = False
    for word in words:
        if word in SHELL_OPERATORS:
            commands.append([])
        elif redirect_target:  # the file of a `> file` redirection
            redirect_target = False
        elif re.fullmatch(r"\d?>>?(&\d)?", word):
            redirect_target = not word.endswith(("&1", "&2"))
        elif re.match(r"\d?>", word):  # `>file`, `2>&1`
            continue
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def _strip_env(words: list[str]) -> list[str]:
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    return words


def cli_args(words: list[str]) -> list[str] | None:
    """The arguments after the program if `words` invokes our CLI, else None."""
    words = _strip_env(words)
    if not words:
        return None
    prog = words[0]
    if prog in ("sparsecircuits", ".venv/bin/sparsecircuits", "./.venv/bin/sparsecircuits"):
        return words[1:]
    if "-m" in words and prog.split("/")[-1] in ("python", "python3", "torchrun"):
        at = words.index("-m")
        if at + 1 < len(words) and words[at + 1] == "sparsecircuits":
            return words[at + 2 :]
    return None


def parse_cli(args: list[str]) -> tuple[tuple[str, ...], str | None]:
    """Resolve and parse `sparsecircuits ARGS` with the real click parser; invoke nothing.

    Returns the command path (e.g. ("tasks", "eval")) and None, or an error message.
    """
    import typer
    import typer.main
    from typer._click import exceptions as click_exc

    from sparsecircuits import cli

    if "train" not in {c.name for c in cli.app.registered_commands}:
        cli._mount()
    root = typer.main.get_command(cli.app)
    path: list[str] = []
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help prints the page
            ctx = root.make_context("sparsecircuits", list(args))
            command = root
            while hasattr(command, "commands"):
                rest = [*ctx._protected_args, *ctx.args]
                if not rest:
                    return tuple(path), "a command group needs a subcommand"
                name, command, rest = command.resolve_command(ctx, rest)
                path.append(name)
                ctx = command.make_context(name, rest, parent=ctx)
    except typer.Exit:
        return tuple(path), None
    except click_exc.ClickException as exc:
        return tuple(path), exc.format_message()
    return tuple(path), None


class Checker:
    """Runs or parses each snippet in one temporary working directory."""

    def __init__(
        self, workdir: Path, parse_only: bool, timeout: float, assume_activated: bool = False
    ) -> None:
        self.workdir = workdir
        self.parse_only = parse_only
        self.timeout = timeout
        self.activated = assume_activated
        venv_bin = str(REPO / ".venv" / "bin")
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join(path),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "100",
        }
        self.env.pop("VIRTUAL_ENV", None)

    def check(self, snippet: Snippet) -> list[Outcome]:
        if snippet.mode not in MODES:
            return [Outcome(snippet, "FAIL", f"unknown marker readme-check: {snippet.mode}")]
        if snippet.mode == "skip":
            return [Outcome(snippet, "SKIP", "marked skip")]
        if snippet.kind == "python":
            if self.parse_only or snippet.mode == "parse-only":
                try:
                    compile(snippet.text, f"README:{snippet.line}", "exec")
                except SyntaxError as exc:
                    return [Outcome(snippet, "FAIL", f"syntax error: {exc}")]
                return [Outcome(snippet, "PARSE", "python compiles")]
            python = str(REPO / ".venv" / "bin" / "python")
            if not Path(python).exists():
                python = sys.executable
            return [self._execute(snippet, [python, "-c", snippet.text])]
        commands = split_commands(snippet.text)
        if isinstance(commands, str):
            return [Outcome(snippet, "FAIL", commands)]
        verdicts = [self._classify(snippet, words) for words in commands]
        failures = [v for v in verdicts if v.status == "FAIL"]
        if failures:
            return failures
        if any(v.status == "RUN" for v in verdicts):
            prefix = "source .venv/bin/activate && " if self.activated else ""
            return [self._execute(snippet, ["bash", "-c", prefix + snippet.text])]
        return verdicts

    def _classify(self, snippet: Snippet, words: list[str]) -> Outcome:
        """RUN (to be executed), or a final verdict that needs no execution."""
        args = cli_args(words)
        bare = _strip_env(words)
        if args is not None:
            path, error = parse_cli(args)
            problems = [f"`sparsecircuits {' '.join(path)}`: {error}"] if error else []
            if bare[0] == "sparsecircuits" and not self.activated:
                problems.append(
                    "bare `sparsecircuits` is not on PATH after set-up: activate "
                    ".venv earlier or write .venv/bin/sparsecircuits"
                )
            if problems:
                return Outcome(snippet, "FAIL", "; ".join(problems))
            wants_run = "--help" in args or (
                path in RUN_BY_DEFAULT
                if snippet.mode == "default"
                else snippet.mode in ("run", "fails")
            )
            if self.parse_only or path in NEVER_RUN or not wants_run or bare[0] == "torchrun":
                return Outcome(snippet, "PARSE", "parsed by the CLI")
            return Outcome(snippet, "RUN")
        if (
            bare[:1] in (["source"], ["."])
            and len(bare) == 2
            and bare[1].endswith(".venv/bin/activate")
        ):
            self.activated = True
            if not (REPO / ".venv" / "bin" / "activate").exists():
                return Outcome(snippet, "FAIL", ".venv/bin/activate does not exist")
            return Outcome(snippet, "EXISTS", ".venv/bin/activate")
        script = _script_of(bare)
        if script is not None:
            if not (REPO / script).is_file():
                return Outcome(snippet, "FAIL", f"{script} does not exist in the repository")
            return Outcome(snippet, "EXISTS", script)
        return Outcome(snippet, "SKIP", f"`{bare[0] if bare else ''}` is not checked")

    def _execute(self, snippet: Snippet, program: list[str]) -> Outcome:
        try:
            proc = subprocess.run(
                program,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return Outcome(snippet, "FAIL", f"timed out after {self.timeout:.0f} s", program)
        if snippet.mode == "fails":
            if proc.returncode == 0:
                return Outcome(snippet, "FAIL", "marked `fails` but exited 0", program)
            last = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()[-1]
            return Outcome(snippet, "RUN", f"failed as marked: {last}", program)
        if proc.returncode != 0:
            lines = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()
            return Outcome(snippet, "FAIL", f"exit {proc.returncode}: {lines[-1]}", program)
        if _steer_without_effect(proc.stdout):
            return Outcome(
                snippet,
                "FAIL",
                "steer prints the same text with and without the "
                "intervention: pick an example that shows an effect",
                program,
            )
        return Outcome(snippet, "RUN", "ran", program)


def _steer_without_effect(stdout: str) -> bool:
    """True when `steer` output shows identical generations (a README example that shows nothing)."""
    match = re.search(r"--- without intervention ---\n(.*?)\n--- with .*? ---\n(.*)", stdout, re.S)
    return bool(match) and match.group(1).strip() == match.group(2).strip()


def _script_of(words: list[str]) -> str | None:
    """`bash scripts/x.sh` / `python benchmarks/x.py` -> the repository file it names."""
    if len(words) >= 2 and words[0] in ("bash", "sh", "python", "python3", ".venv/bin/python"):
        target = words[1]
        if not target.startswith("-"):
            return target
    return None


def prepare_workdir(workdir: Path) -> None:
    """A clean directory that looks like a fresh clone after set-up, minus the sources."""
    shutil.copytree(REPO / "models", workdir / "models")
    venv = REPO / ".venv"
    if venv.exists():
        (workdir / ".venv").symlink_to(venv, target_is_directory=True)


def check_readme(
    readme: Path,
    parse_only: bool = False,
    timeout: float = 600,
    keep: bool = False,
    assume_activated: bool = False,
    out=sys.stdout,
) -> list[Outcome]:
    """Check every snippet of `readme`, printing one line each; returns all outcomes."""
    snippets = extract(readme.read_text(encoding="utf-8"))
    workdir = Path(tempfile.mkdtemp(prefix="readme-check-"))
    outcomes: list[Outcome] = []
    try:
        prepare_workdir(workdir)
        checker = Checker(workdir, parse_only, timeout, assume_activated)
        for snippet in snippets:
            for outcome in checker.check(snippet):
                outcomes.append(outcome)
                shown = snippet.text.splitlines()[0][:90]
                detail = f"  -- {outcome.detail}" if outcome.detail else ""
                print(
                    f"{outcome.status:<6} {readme.name}:{snippet.line}  {shown}{detail}",
                    file=out,
                    flush=True,
                )
    finally:
        if keep:
            print(f"kept {workdir}", file=out)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = sum(o.status == "FAIL" for o in outcomes)
    print(f"{len(outcomes)} checked, {failed} failed", file=out)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", nargs="?", type=Path, default=REPO / "README.md")
    parser.add_argument("--parse-only", action="store_true", help="run nothing, parse all")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--assume-activated",
        action="store_true",
        help="diagnosis only: treat .venv as activated from the start",
    )
    opts = parser.parse_args()
    outcomes = check_readme(
        opts.readme, opts.parse_only, opts.timeout, opts.keep, opts.assume_activated
    )
    return 1 if any(o.status == "FAIL" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
