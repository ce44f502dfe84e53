"""Building blocks for task templates: names, words, filler statements, function scaffolds.

Every task draws its surface form from these pools (function and variable names, string
contents, indentation, surrounding lines) so that a model cannot pass by memorising one
rendering. Fillers can exclude characters (`forbid`) so that, say, the bracket-counting task
never sees an unrelated `[` in its surrounding code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Names that are one token *with a leading space* in every byte-level BPE of vocabulary 2048 we
# trained on the standard library (all of it, without its tests, and 300-file subsets): common
# identifiers such as ` count` or ` items` are not always. Tasks whose candidates are variable
# names draw them from here.
TOKEN_NAMES = (
    "name", "value", "data", "path", "key", "size", "text", "result", "args", "line",
    "mode", "index", "start", "end", "node", "item", "obj", "func", "default", "file",
    "message", "source", "module", "context", "values", "names", "state", "url",
    "user", "token", "root", "base", "other", "first", "last", "output", "current",
)  # fmt: skip

# Any identifier: used in the parts of a context the choice does not depend on.
NAMES = TOKEN_NAMES + (
    "timeout",  # one token in some stdlib BPEs, two in the default one (train split only)
    "count", "level", "info", "prefix", "target", "parent", "items", "lines", "buffer",
    "stream", "options", "offset", "width", "length", "flags", "host", "entry", "child",
    "total", "seen", "parts", "chunks", "pending", "queue", "words", "label", "title",
    "config", "depth", "limit", "height", "record", "records", "row", "rows", "col", "cell",
    "counter", "report", "handler", "callback", "response", "request", "payload", "header",
    "headers", "field", "fields", "attrs", "params", "kwargs", "tmp", "new_value", "old_value",
    "max_size", "min_size", "num_items", "file_name", "dir_name", "line_no", "last_seen",
    "block", "blocks", "chars", "digits", "found", "matches", "pattern", "encoding", "errors",
)  # fmt: skip

WORDS = (
    "the", "value", "file", "could", "not", "be", "found", "invalid", "missing", "argument",
    "expected", "got", "error", "while", "reading", "writing", "config", "loaded", "from",
    "unknown", "option", "cannot", "open", "directory", "parse", "line", "token", "empty",
    "input", "output", "done", "start", "processing", "skipping", "item", "items", "total",
    "warning", "must", "positive", "number", "string", "list", "key", "already", "exists",
    "connection", "closed", "timeout", "retry", "saved", "result", "results", "header",
    "user", "name", "record", "records", "failed", "success", "ready", "waiting", "server",
)  # fmt: skip

FUNC_NAMES = (
    "process", "load", "parse", "handle", "update", "build", "main", "run", "check",
    "compute", "render", "collect", "convert", "normalize", "read_config", "write_output",
    "get_items", "make_table", "find_all", "apply", "encode", "decode", "merge", "split_lines",
    "format_row", "validate", "setup", "reset", "scan", "visit", "emit", "flush", "resolve",
)  # fmt: skip

CALLEES = (
    "len", "str", "int", "sorted", "list", "tuple", "abs", "max", "min", "repr", "hash",
    "self.process", "helper", "compute", "os.fspath", "self._get", "func", "normalize",
)  # fmt: skip

METHODS = ("copy", "strip", "lower", "keys", "values", "items", "pop", "clear", "close")

CLASS_NAMES = (
    "Parser", "Config", "Node", "Reader", "Writer", "Handler", "Record", "Buffer", "Client",
    "Server", "Entry", "Table", "Cache", "Token", "Stream", "Request", "Response", "Job",
)  # fmt: skip

MODULES = ("os", "sys", "re", "json", "io", "logging", "itertools", "collections", "functools")

# Statements that surround the choice. `{i}` is the indentation of the statement itself (for
# continuation lines of compound statements), `{a}`/`{b}`/`{c}` are names, `{n}` a number,
# `{f}` a callee, `{m}` a method, `{w}`/`{w2}`/`{w3}` words, `{q}` a quote character.
FILLERS = (
    "{a} = {f}({b})",
    "{a} = {b} + {n}",
    "{a} += {n}",
    "{a} = len({b})",
    "{a} = {b} * {n}",
    "{a} = {b}.{m}()",
    "{b}.{m}()",
    "{f}({a}, {b})",
    "assert {a} is not None",
    "{a} = {n}",
    "{a} = None",
    "{a} = {b} or {n}",
    "{a} = {b} is None",
    "print({a})",
    "# {w} {w2} {w3}",
    "# {w} {w2}",
    "if {a} is None:\n{i}    {a} = {n}",
    "if not {b}:\n{i}    return None",
    "if {a} > {n}:\n{i}    {b} = {a}",
    "while {a} < {n}:\n{i}    {a} += 1",
    "for {c} in {b}:\n{i}    {a} += {c}",
    "try:\n{i}    {a} = {f}({b})\n{i}except KeyError:\n{i}    {a} = None",
    "{a} = []",
    "{a} = {{}}",
    "{a} = [{b}, {n}]",
    "{a} = {b}[{n}]",
    "{a} = {{{q}{w}{q}: {b}}}",
    "{a} = {b}.get({q}{w}{q})",
    "{a} = {q}{w}{q}",
    "logger.debug({q}{w} {w2} %s{q}, {a})",
    "{a} = {f}({b}, {q}{w}{q})",
)


def newline_token(indent: int) -> str:
    """The token a byte-level BPE emits for a line break followed by `indent` spaces and a
    word: the GPT-2 pre-tokenizer gives the last space to the word (`'\\n   '` + `' x'`)."""
    return "\n" + " " * max(indent - 1, 0)


def last_line(context: str) -> str:
    return context.rsplit("\n", 1)[-1]


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def pick(rng: random.Random, pool: tuple[str, ...], exclude: set[str] | None = None) -> str:
    if not exclude:
        return rng.choice(pool)
    choices = [p for p in pool if p not in exclude]
    return rng.choice(choices)


def words(rng: random.Random, lo: int = 1, hi: int = 5) -> str:
    """A few space-separated words (string contents); starts and ends with a letter."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def render_filler(rng: random.Random, template: str, indent: int, names: tuple[str, ...]) -> str:
    pad = " " * indent
    a, b, c = rng.sample(names, 3)
    text = template.format(
        i=pad, a=a, b=b, c=c, n=rng.randint(0, 99), f=rng.choice(CALLEES),
        m=rng.choice(METHODS), w=rng.choice(WORDS), w2=rng.choice(WORDS), w3=rng.choice(WORDS),
        q=rng.choice("\"'"),
    )  # fmt: skip
    return pad + text


def filler_lines(
    rng: random.Random,
    indent: int,
    k: int,
    forbid: str = "",
    reserved: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """`k` statements at `indent`, without any character of `forbid` and without using the
    names in `reserved` (the names the task is about)."""
    names = tuple(n for n in NAMES if n not in reserved)
    out: list[str] = []
    while len(out) < k:
        line = render_filler(rng, rng.choice(FILLERS), indent, names)
        if not any(ch in line for ch in forbid):
            out.append(line)
    return out


@dataclass(frozen=True)
class Scaffold:
    """The code above the lines a task writes: imports, class, def line, fillers."""

    lines: list[str]
    """Complete lines, already indented."""
    indent: int
    """Indentation of the function body."""
    params: tuple[str, ...]
    """Parameter names of the function (without `self`)."""

    def context(self, *more: str) -> str:
        """Join the scaffold and the task's own lines (the last one is cut at the choice)."""
        return "\n".join([*self.lines, *more])


def scaffold(
    rng: random.Random,
    forbid: str = "",
    reserved: set[str] | frozenset[str] = frozenset(),
    fillers: tuple[int, int] = (0, 3),
    params: tuple[str, ...] | None = None,
) -> Scaffold:
    """A function (sometimes a method, sometimes after imports) with a few filler lines."""
    lines: list[str] = []
    if rng.random() < 0.3:
        lines += [f"import {m}" for m in rng.sample(MODULES, rng.randint(1, 2))] + ["", ""]
    indent = 0
    method = rng.random() < 0.35
    if method:
        lines.append(f"class {rng.choice(CLASS_NAMES)}:")
        indent = 4
    if params is None:
        pool = [n for n in NAMES if n not in reserved]
        params = tuple(rng.sample(pool, rng.randint(0, 3)))
    signature = ", ".join((["self"] if method else []) + list(params))
    pad = " " * indent
    lines.append(f"{pad}def {rng.choice(FUNC_NAMES)}({signature}):")
    body = indent + 4
    if '"' not in forbid and rng.random() < 0.25:
        lines.append(f'{" " * body}"""{words(rng, 2, 6).capitalize()}."""')
    k = rng.randint(*fillers)
    lines += filler_lines(rng, body, k, forbid, set(reserved) | set(params))
    return Scaffold(lines, body, params)
