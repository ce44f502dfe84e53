"""Tasks decided by a keyword on the current line: `for`/`while`, `if`/ternary, `with`, ...

Same conventions as `python_tasks.py`: one template draw, rendered once per class, contexts
differing only in the keyword (or construct) the task is about.
"""

from __future__ import annotations

import random

from sparsecircuits.tasks.base import PairTask, TaskExample, pair
from sparsecircuits.tasks.registry import register
from sparsecircuits.tasks.templates import (
    CALLEES,
    CLASS_NAMES,
    FUNC_NAMES,
    NAMES,
    TOKEN_NAMES,
    filler_lines,
    indent_of,
    last_line,
    newline_token,
    pick,
    scaffold,
)

Pair = tuple[TaskExample, TaskExample]


def _next_statement(rng: random.Random, names: set[str]) -> str:
    """A simple one-line statement (no leading space), for continuations."""
    return filler_lines(rng, 0, 1, forbid=":#", reserved=names)[0]


def _condition(rng: random.Random, a: str, b: str) -> str:
    """A condition that ends with a name or number, never `)` or `]` (those would merge with
    a following `:` into `):` / `]:`)."""
    n = rng.randint(0, 9)
    return rng.choice([f"{a} is None", f"{a} is not None", f"{a} > {n}", f"{a} == {b}",
                       f"not {a}", a, f"{a} in {b}", f"len({a}) > {n}", f"{a} and {b}",
                       f"{a} < {b}", f"{a}.{b}"])  # fmt: skip


@register
class FinalKwarg(PairTask):
    name = "final_kwarg"
    description = (
        "after a parameter name in a def: `=` (of `=None`) if an earlier parameter has a default, "
        "else `):`; the paper's `=None`/`):\\n` are not single tokens"
    )
    class_names = ("after a default", "no default before")
    DEFAULTS = ("None", "None", "0", "False", "True", "1", "''", '""', "-1", "[]")

    def draw(self, rng: random.Random) -> Pair:
        names = rng.sample(NAMES, rng.randint(2, 5))
        params, last = names[:-1], names[-1]
        n_defaults = rng.randint(1, len(params))
        with_defaults = [
            f"{p}={rng.choice(self.DEFAULTS)}" if i >= len(params) - n_defaults else p
            for i, p in enumerate(params)
        ]
        lines = []
        indent = 0
        if rng.random() < 0.4:
            lines.append(f"class {rng.choice(CLASS_NAMES)}:")
            indent = 4
            params = ["self", *params]
            with_defaults = ["self", *with_defaults]
        pad = " " * indent
        if rng.random() < 0.3:
            lines += [f"{pad}def {rng.choice(FUNC_NAMES)}(self):" if indent else
                      f"def {rng.choice(FUNC_NAMES)}():", f"{pad}    return None", ""]  # fmt: skip
        if rng.random() < 0.2:
            lines.append(pad + rng.choice(["@staticmethod", "@property", "@functools.cache"]))
        fname = rng.choice(FUNC_NAMES)
        contexts = tuple(
            "\n".join([*lines, f"{pad}def {fname}({', '.join([*ps, last])}"])
            for ps in (with_defaults, params)
        )
        return pair(contexts, ("=", "):"), ("None):", "\n"))

    def oracle(self, context: str) -> str:
        params = context.rsplit("def ", 1)[1].split("(", 1)[1].split(",")[:-1]
        return "=" if any("=" in p for p in params) else "):"


@register
class WithAs(PairTask):
    name = "with_as"
    description = (
        "after `with open(...)` predict ` as`; after `f = open(...)` the line break "
        "(a newline token carrying the next line's indentation)"
    )
    class_names = ("with statement", "assignment")

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng)
        a, b, fh = rng.sample(NAMES, 2) + [rng.choice(["f", "fh", "fp", "handle", "stream"])]
        q = rng.choice("\"'")
        expr = rng.choice([
            f"open({a})", f"open({a}, {q}rb{q})", f"open({a}, encoding={q}utf-8{q})",
            f"gzip.open({a})", f"io.open({a}, {q}w{q})", f"open(os.path.join({a}, {b}))",
            f"codecs.open({a}, {q}r{q}, {q}utf-8{q})", f"open(self.{a})", f"tarfile.open({a})",
        ])  # fmt: skip
        pad = " " * sc.indent
        contexts = (sc.context(f"{pad}with {expr}"), sc.context(f"{pad}{fh} = {expr}"))
        nl = newline_token(sc.indent)
        then = " " + _next_statement(rng, {fh})
        return pair(contexts, (" as", nl), (f" {fh}:", then))

    def oracle(self, context: str) -> str:
        line = last_line(context)
        return " as" if line.lstrip().startswith("with ") else newline_token(indent_of(line))


@register
class ForWhile(PairTask):
    name = "for_while"
    description = "` in` after `for x`, `:` after `while x`"
    class_names = ("for", "while")

    def draw(self, rng: random.Random) -> Pair:
        v = rng.choice(NAMES)
        sc = scaffold(rng, reserved={v})
        pad = " " * sc.indent
        contexts = tuple(sc.context(f"{pad}{kw} {v}") for kw in ("for", "while"))
        src = pick(rng, NAMES, {v})
        return pair(contexts, (" in", ":"), (f" {src}:", "\n"))

    def oracle(self, context: str) -> str:
        return " in" if last_line(context).lstrip().startswith("for ") else ":"


@register
class ElseElif(PairTask):
    name = "else_elif"
    description = (
        "`:` after `else`; after `elif` the condition, which here starts with the variable the "
        "`if` tested (` x`)"
    )
    class_names = ("else", "elif")

    def draw(self, rng: random.Random) -> Pair:
        v = rng.choice(TOKEN_NAMES)
        sc = scaffold(rng, reserved={v}, fillers=(0, 2))
        pad, pad4 = " " * sc.indent, " " * (sc.indent + 4)
        b = pick(rng, NAMES, {v})
        tests = [f"{v} == {n}" for n in rng.sample(range(10), 3)]
        tests = rng.choice([tests, [f"{v} is None", f"{v} > 0", f"{v} < 0"],
                            [f"{v} in {b}", f"{v}", f"{v} == {b}"]])  # fmt: skip
        lines = [f"{pad}if {tests[0]}:"]
        lines += filler_lines(rng, sc.indent + 4, 1, forbid=":#", reserved={v})
        if rng.random() < 0.4:
            lines += [f"{pad}elif {tests[1]}:", pad4 + _next_statement(rng, {v})]
        contexts = tuple(sc.context(*lines, f"{pad}{kw}") for kw in ("else", "elif"))
        rest = tests[2][len(v) :]
        return pair(contexts, (":", f" {v}"), ("\n", rest + ":"))

    def oracle(self, context: str) -> str:
        if last_line(context).strip() == "else":
            return ":"
        ifs = [ln.strip() for ln in context.split("\n") if ln.strip().startswith("if ")]
        return " " + ifs[-1][3:].replace(":", " ").replace(".", " ").split()[0]


@register
class IfTernary(PairTask):
    name = "if_ternary"
    description = "after an `if` condition: `:` for an if statement, ` else` for a ternary"
    class_names = ("if statement", "ternary")

    def draw(self, rng: random.Random) -> Pair:
        a, b, x = rng.sample(NAMES, 3)
        sc = scaffold(rng, reserved={a, b, x})
        pad = " " * sc.indent
        cond = _condition(rng, a, b)
        value = rng.choice([b, str(rng.randint(0, 9)), "None", f"{rng.choice(CALLEES)}({b})"])
        target = rng.choice([f"{x} = ", "return ", f"{x} = ", f"self.{x} = "])
        contexts = (sc.context(f"{pad}if {cond}"), sc.context(f"{pad}{target}{value} if {cond}"))
        return pair(contexts, (":", " else"), ("\n", " None"))

    def oracle(self, context: str) -> str:
        return ":" if last_line(context).lstrip().startswith("if ") else " else"


@register
class LambdaFunc(PairTask):
    name = "lambda_func"
    description = "`:` after `lambda f` (its parameter), `(` after `def f`"
    class_names = ("lambda", "def")
    NAMES_ = ("x", "item", "key", "value", "obj", "node", "name", "path", "s", "f", "func",
              "check", "run", "get", "entry", "row", "pair", "arg", "e", "k", "m", "t")  # fmt: skip

    def draw(self, rng: random.Random) -> Pair:
        f = rng.choice(self.NAMES_)
        var, seq = rng.sample([n for n in NAMES if n != f], 2)
        sc = scaffold(rng, reserved={f, var, seq})
        pad = " " * sc.indent
        lam = rng.choice([f"{var} = lambda {f}", f"{var} = sorted({seq}, key=lambda {f}",
                          f"{seq}.sort(key=lambda {f}", f"return lambda {f}",
                          f"{var} = map(lambda {f}", f"self.{var} = lambda {f}"])  # fmt: skip
        contexts = (sc.context(pad + lam), sc.context(f"{pad}def {f}"))
        arg = pick(rng, NAMES, {f})
        return pair(contexts, (":", "("), (f" {f}", f"{arg}):"))

    def oracle(self, context: str) -> str:
        return ":" if "lambda" in last_line(context) else "("


@register
class IfEquals(PairTask):
    name = "if_equals"
    description = "` ==` after `if x` (a comparison), ` =` after `x` starting a line (assignment)"
    class_names = ("if", "assignment")

    def draw(self, rng: random.Random) -> Pair:
        v, a = rng.sample(NAMES, 2)
        sc = scaffold(rng, reserved={v, a})
        pad = " " * sc.indent
        before, kw = [], "if"
        if rng.random() < 0.3:
            before = [f"{pad}if {a}:", pad + "    " + _next_statement(rng, {v})]
            kw = "elif"
        contexts = (sc.context(*before, f"{pad}{kw} {v}"), sc.context(*before, f"{pad}{v}"))
        value = rng.choice(["None", "0", "1", a, "True", "False"])
        return pair(contexts, (" ==", " ="), (f" {value}:", f" {value}"))

    def oracle(self, context: str) -> str:
        words = last_line(context).split()
        return " ==" if words[0] in ("if", "elif") else " ="


@register
class EnumerateRange(PairTask):
    name = "enumerate_range"
    description = (
        "after `for i, x in` predict ` en` (first token of ` enumerate`, not one token in a "
        "2048-token vocabulary); after `for i in` predict ` range`"
    )
    class_names = ("two loop variables", "one loop variable")
    INDEX_NAMES = ("i", "idx", "index", "n", "k", "j", "pos", "lineno", "num", "count", "line_no")

    def draw(self, rng: random.Random) -> Pair:
        i = rng.choice(self.INDEX_NAMES)
        x, src = rng.sample([n for n in NAMES if n != i], 2)
        sc = scaffold(rng, reserved={i, x, src})
        pad = " " * sc.indent
        contexts = (sc.context(f"{pad}for {i}, {x} in"), sc.context(f"{pad}for {i} in"))
        return pair(contexts, (" en", " range"), (f"umerate({src}):", f"(len({src})):"))

    def oracle(self, context: str) -> str:
        return " en" if "," in last_line(context) else " range"


@register
class VarIf(PairTask):
    name = "var_if"
    description = (
        "`:` after `if x == True`; after `x = True` the line break (a newline token carrying "
        "the next line's indentation)"
    )
    class_names = ("if", "assignment")

    def draw(self, rng: random.Random) -> Pair:
        v = rng.choice(NAMES)
        sc = scaffold(rng, reserved={v})
        pad = " " * sc.indent
        const = rng.choice(["True", "True", "False", "None", "0", "1"])
        contexts = (sc.context(f"{pad}if {v} == {const}"), sc.context(f"{pad}{v} = {const}"))
        then = " " + _next_statement(rng, {v})
        return pair(contexts, (":", newline_token(sc.indent)), ("\n", then))

    def oracle(self, context: str) -> str:
        line = last_line(context)
        return ":" if line.lstrip().startswith("if ") else newline_token(indent_of(line))


@register
class WhileReturnTrue(PairTask):
    name = "while_return_true"
    description = (
        "`:` after `while True`; after `return True` the line break, dedented to the enclosing "
        "block (a newline token carrying that indentation)"
    )
    class_names = ("while True", "return True")

    def draw(self, rng: random.Random) -> Pair:
        a, b = rng.sample(NAMES, 2)
        sc = scaffold(rng, reserved={a, b})
        pad, pad4 = " " * sc.indent, " " * (sc.indent + 4)
        opener = rng.choice([f"if {_condition(rng, a, b)}:", f"for {a} in {b}:", f"with {a}:",
                             f"if {a}:", f"while {a}:"])  # fmt: skip
        lines = [pad + opener]
        if rng.random() < 0.4:
            lines += filler_lines(rng, sc.indent + 4, 1, forbid=":", reserved={a, b})
        contexts = tuple(sc.context(*lines, f"{pad4}{kw} True") for kw in ("while", "return"))
        then = " " + rng.choice(["return False", "return None", f"{a} = None", "pass"])
        return pair(contexts, (":", newline_token(sc.indent)), ("\n", then))

    def oracle(self, context: str) -> str:
        line = last_line(context)
        if line.lstrip().startswith("while "):
            return ":"
        return newline_token(indent_of(line) - 4)
