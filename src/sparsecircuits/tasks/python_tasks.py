"""Tasks that track something earlier in the context: quotes, brackets, variables, indentation.

Each class draws one template and renders it twice, once per class, so the two contexts differ
only in what the task is about; `oracle` states the rule from the text alone. Candidate tokens
were chosen to be single tokens of a 2048-token byte-level BPE of the standard library; where
the paper's phrasing does not tokenize that way the description says how it was adapted.
"""

from __future__ import annotations

import random
import re

from sparsecircuits.tasks.base import PairTask, TaskExample, pair
from sparsecircuits.tasks.registry import register
from sparsecircuits.tasks.templates import (
    CALLEES,
    CLASS_NAMES,
    MODULES,
    NAMES,
    TOKEN_NAMES,
    WORDS,
    filler_lines,
    indent_of,
    last_line,
    newline_token,
    pick,
    scaffold,
    words,
)

Pair = tuple[TaskExample, TaskExample]
QUOTES = "\"'"

# Calls whose last argument is a string literal.
STRING_CALLS = (
    "print", "logger.info", "log.debug", "warnings.warn", "raise ValueError",
    "raise TypeError", "raise RuntimeError", "parser.error", "sys.stdout.write", "self.fail",
    "errors.append", "lines.append", "out.write", "logging.warning", "self.log",
)  # fmt: skip


def _maybe_block(rng: random.Random, indent: int, names: tuple[str, ...]) -> tuple[list[str], int]:
    """Sometimes wrap the task's last line in an `if`/`for` block: (opening lines, indent)."""
    if rng.random() < 0.7:
        return [], indent
    a, b = rng.sample(names, 2)
    opener = rng.choice([f"if {a}:", f"if {a} is not None:", f"for {a} in {b}:", f"while {a}:"])
    return [" " * indent + opener], indent + 4


@register
class SingleDoubleQuote(PairTask):
    name = "single_double_quote"
    description = "close a string with `\")` or `')`, matching the quote that opened it"
    class_names = ("double quote", "single quote")

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng, forbid=QUOTES)
        block, indent = _maybe_block(rng, sc.indent, NAMES)
        call = rng.choice(STRING_CALLS)
        arg = f"{rng.choice(NAMES)}, " if rng.random() < 0.3 else ""
        body = words(rng, 1, 6)
        if rng.random() < 0.3:
            body = body.capitalize()
        pad = " " * indent
        contexts = tuple(sc.context(*block, f"{pad}{call}({arg}{q}{body}") for q in QUOTES)
        return pair(contexts, ('")', "')"), ("\n", "\n"))

    def oracle(self, context: str) -> str:
        last = max(context.rfind('"'), context.rfind("'"))
        return context[last] + ")"


class _SetOrStringBase(PairTask):
    """`x = set()` or `x = ""` earlier; at `x` predict `.` (`.add`) or ` +=`."""

    class_names = ("set", "str")
    # Probability of a second variable, initialised with the other type under another name.
    distractor_p = 0.3

    def variable(self, rng: random.Random) -> str:
        raise NotImplementedError

    def draw(self, rng: random.Random) -> Pair:
        var = self.variable(rng)
        other = pick(rng, NAMES, {var})
        item = pick(rng, NAMES, {var, other})
        sc = scaffold(rng, reserved={var, other, item}, fillers=(0, 2))
        pad = " " * sc.indent
        empty = rng.choice(['""', "''"])
        inits = {0: f"{pad}{var} = set()", 1: f"{pad}{var} = {empty}"}
        distractor = rng.random() < self.distractor_p
        distractor_first = rng.random() < 0.5
        middle = filler_lines(rng, sc.indent, rng.randint(0, 2), reserved={var, other, item})
        loop = rng.random()
        if loop < 0.5:
            src = pick(rng, NAMES, {var, other, item})
            body = [f"{pad}for {item} in {src}:"]
            inner = sc.indent + 4
        elif loop < 0.7:
            body = [f"{pad}if {item} is not None:"]
            inner = sc.indent + 4
        else:
            body, inner = [], sc.indent
        contexts = []
        for label in (0, 1):
            lines = [inits[label]]
            if distractor:
                other_init = inits[1 - label].replace(f"{var} =", f"{other} =", 1)
                lines = [other_init, *lines] if distractor_first else [*lines, other_init]
            contexts.append(sc.context(*lines, *middle, *body, " " * inner + var))
        return pair(tuple(contexts), (".", " +="), (f"add({item})", f" {item}"))

    def oracle(self, context: str) -> str:
        var = last_line(context).strip()
        inits = re.findall(rf"^\s*{re.escape(var)} = (set\(\)|\"\"|'')$", context, re.M)
        return "." if inits[-1] == "set()" else " +="


@register
class SetOrString(_SetOrStringBase):
    name = "set_or_string"
    description = (
        'a variable initialised as `set()` or `""`: predict `.` (of `.add`) vs ` +=`; '
        "`.add` is not one token, so the choice is `.`"
    )

    def variable(self, rng: random.Random) -> str:
        return rng.choice(NAMES)


@register
class SetOrStringFixedVarname(_SetOrStringBase):
    name = "set_or_string_fixedvarname"
    description = "as set_or_string, but the variable is always called `current`"

    def variable(self, rng: random.Random) -> str:
        return "current"


@register
class ClassInit(PairTask):
    name = "class_init"
    description = "in `self.x = x` lines of an __init__, copy the attribute's name after `=`"
    class_names = ("earlier parameter", "later parameter")

    def draw(self, rng: random.Random) -> Pair:
        params = rng.sample(TOKEN_NAMES, rng.randint(2, 4))
        done = rng.randint(0, len(params) - 2)
        x, y = params[done], rng.choice(params[done + 1 :])
        under = "_" if rng.random() < 0.3 else ""
        lines = []
        if rng.random() < 0.3:
            lines += [f"import {m}" for m in rng.sample(MODULES, rng.randint(1, 2))] + ["", ""]
        base = rng.choice(["", "", "(object)", "(Base)", f"({rng.choice(CLASS_NAMES)})"])
        lines.append(f"class {rng.choice(CLASS_NAMES)}{base}:")
        if rng.random() < 0.3:
            lines.append(f'    """{words(rng, 2, 6).capitalize()}."""')
            lines.append("")
        extra = [f"{n}=None" for n in rng.sample(NAMES, rng.randint(0, 1)) if n not in params]
        lines.append(f"    def __init__(self, {', '.join(params + extra)}):")
        if base and rng.random() < 0.5:
            lines.append("        super().__init__()")
        lines += [f"        self.{under}{p} = {p}" for p in params[:done]]
        contexts = tuple("\n".join([*lines, f"        self.{under}{p} ="]) for p in (x, y))
        return pair(contexts, (f" {x}", f" {y}"), ("\n", "\n"))

    def oracle(self, context: str) -> str:
        m = re.search(r"self\._?(\w+) =$", context)
        return " " + m.group(1)


@register
class BracketBrace(PairTask):
    name = "bracket_brace"
    description = (
        "first element of a literal: `:` inside a dict, `,` inside a list "
        '(`":`/`",` when the key is a string, as those merge into one token)'
    )
    class_names = ("dict", "list")

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng, forbid="[]{}")
        var = rng.choice(NAMES)
        q = rng.choice(["", "", '"', "'"])
        # Identifier keys must not be keywords (WORDS has `not`, `from`, ...).
        key = rng.choice(NAMES + WORDS) if q else rng.choice(NAMES)
        pad = " " * sc.indent
        layout = rng.random()
        callee = rng.choice(CALLEES)
        contexts = []
        for opening in "{[":
            if layout < 0.5:
                last = f"{pad}{var} = {opening}{q}{key}"
            elif layout < 0.75:  # the literal spans lines: the bracket is one line up
                last = f"{pad}{var} = {opening}\n{pad}    {q}{key}"
            else:
                last = f"{pad}{var} = {callee}({opening}{q}{key}"
            contexts.append(sc.context(last))
        return pair(tuple(contexts), (q + ":", q + ","), (" 0", " 0"))

    def oracle(self, context: str) -> str:
        at = max(context.rfind("{"), context.rfind("["))
        rest = context[at + 1 :].lstrip()
        q = rest[0] if rest[0] in QUOTES else ""
        return q + (":" if context[at] == "{" else ",")


# Variable names that say whether a file is read or written, in matching pairs.
FILE_NAME_PAIRS = (
    ("input_path", "output_path"), ("infile", "outfile"), ("src_path", "dst_path"),
    ("source_file", "target_file"), ("in_file", "out_file"), ("read_path", "write_path"),
    ("input_file", "output_file"), ("inpath", "outpath"), ("input_name", "output_name"),
    ("load_path", "save_path"), ("src_file", "dest_file"), ("infilename", "outfilename"),
    ("source_path", "dest_path"), ("input_fname", "output_fname"),
)  # fmt: skip
_READ_NAMES = frozenset(r for r, _ in FILE_NAME_PAIRS)


@register
class WithOpen(PairTask):
    name = "with_open"
    description = "the mode of `open(name, '`: `r` or `w`, from the file variable's name"
    class_names = ("read", "write")

    def draw(self, rng: random.Random) -> Pair:
        names = rng.choice(FILE_NAME_PAIRS)
        sc = scaffold(rng, reserved=set(names))
        pad = " " * sc.indent
        q = rng.choice(QUOTES)
        kw = "mode=" if rng.random() < 0.2 else ""
        opener = rng.choice(["with open", "with io.open", "f = open", "fh = open", "with open"])
        defined = rng.random() < 0.4
        join = f"os.path.join({rng.choice(NAMES)}, {q}{rng.choice(WORDS)}.txt{q})"
        contexts = []
        for name in names:
            lines = [f"{pad}{name} = {join}"] if defined else []
            lines.append(f"{pad}{opener}({name}, {kw}{q}")
            contexts.append(sc.context(*lines))
        return pair(tuple(contexts), ("r", "w"), (q + ")", q + ")"))

    def oracle(self, context: str) -> str:
        name = re.findall(r"open\((\w+),", context)[-1]
        return "r" if name in _READ_NAMES else "w"


@register
class FstringBrace(PairTask):
    name = "fstring_brace"
    description = (
        "inside a message string: ` {` (insert a variable) if it is an f-string, else the "
        'closing quote (`")` in a call, `"` in an assignment)'
    )
    class_names = ("f-string", "plain string")

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng, forbid=QUOTES + "{}")
        block, indent = _maybe_block(rng, sc.indent, NAMES)
        pad = " " * indent
        q = rng.choice(QUOTES)
        body = words(rng, 1, 5)
        if rng.random() < 0.5:
            body = body.capitalize()
        var = rng.choice(NAMES)
        if rng.random() < 0.75:
            head, close = f"{rng.choice(STRING_CALLS)}(", q + ")"
        else:
            head, close = f"{rng.choice(NAMES)} = ", q
        contexts = tuple(sc.context(*block, f"{pad}{head}{f}{q}{body}") for f in ("f", ""))
        return pair(contexts, (" {", close), (f"{var}}}{close}", "\n"))

    def oracle(self, context: str) -> str:
        line = last_line(context)
        at = max(line.rfind('"'), line.rfind("'"))
        if line[at - 1] == "f":
            return " {"
        return line[at] + (")" if line[:at].endswith("(") else "")


@register
class VarSwap(PairTask):
    name = "var_swap"
    description = "`x, y = y, x`: after `x, y = y,` predict the first name again"
    class_names = ("first name", "second name")
    PAIRS = (
        ("a", "b"), ("x", "y"), ("i", "j"), ("u", "v"), ("m", "n"), ("s", "t"), ("f", "g"),
        ("first", "last"), ("start", "end"), ("key", "value"), ("current", "other"),
        ("source", "output"), ("node", "root"), ("lo", "n"), ("text", "line"), ("name", "path"),
        ("data", "result"), ("c", "d"), ("p", "k"), ("base", "other"),
    )  # fmt: skip

    def draw(self, rng: random.Random) -> Pair:
        a, b = rng.choice(self.PAIRS)
        if rng.random() < 0.5:
            a, b = b, a
        sc = scaffold(rng, reserved={a, b}, fillers=(0, 2))
        pad = " " * sc.indent
        values = ("0", "1", "None", pick(rng, NAMES, {a, b}))
        setup = [f"{pad}{v} = {rng.choice(values)}" for v in (a, b)]
        if rng.random() < 0.5:
            setup = []
        style = rng.random()
        if style < 0.3:
            head, indent, cont = [f"{pad}if {a} > {b}:"], sc.indent + 4, "\n"
        elif style < 0.5:  # Euclid's algorithm: `a, b = b, a % b`
            head, indent, cont = [f"{pad}while {b}:"], sc.indent + 4, f" % {b}"
        else:
            head, indent, cont = [], sc.indent, "\n"
        inner = " " * indent
        contexts = tuple(
            sc.context(*setup, *head, f"{inner}{x}, {y} = {y},") for x, y in ((a, b), (b, a))
        )
        return pair(contexts, (f" {a}", f" {b}"), (cont, cont))

    def oracle(self, context: str) -> str:
        m = re.search(r"(\w+), (\w+) = (\w+),$", context)
        return " " + m.group(1)


@register
class IndentFor(PairTask):
    name = "indent_for"
    description = (
        "the line break after a `for ...:` line, indented one level deeper than the `for` "
        "(the newline token carries the indentation minus the space that goes with the word)"
    )
    class_names = ("for at body level", "for one level deeper")

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng)
        d = sc.indent
        pad, pad4 = " " * d, " " * (d + 4)
        a, b, c, x = rng.sample(NAMES, 4)
        opener = rng.choice([f"if {a}:", f"if {a} is not None:", f"with {a}:", f"while {a}:",
                             f"for {c} in {a}:", f"if not {a}:"])  # fmt: skip
        # One simple statement (no block, no comment) closes the opener's block in class 0.
        stmt = filler_lines(rng, d + 4, 1, forbid=":#", reserved={x})[0]
        src = rng.choice([b, f"range({rng.randint(1, 9)})", f"{b}.items()", f"sorted({b})",
                          f"{b}.values()", f"self.{b}", f"{b}[1:]"])  # fmt: skip
        loop = f"for {x} in {src}:"
        ctx0 = sc.context(pad + opener, stmt, pad + loop)
        ctx1 = sc.context(pad + opener, pad4 + loop)
        body = f" {rng.choice(CALLEES)}({x})"
        return pair((ctx0, ctx1), (newline_token(d + 4), newline_token(d + 8)), (body, body))

    def oracle(self, context: str) -> str:
        return newline_token(indent_of(last_line(context)) + 4)


# Callees whose last argument is a list; the list is closed, then the call.
LIST_CALLS = (
    "np.array(", "torch.tensor(", "numpy.asarray(", "self.assertEqual(result, ", "list(",
    "sorted(", "tuple(", "Matrix(", "json.dumps(", "check(", "self.assertEqual(out, ",
    "assert_equal(got, ", "table.extend(", "f(", "np.asarray(",
)  # fmt: skip

# Unmatched `[` in a comment (the distractor of bracket_counting_distractor).
BRACKET_COMMENTS = (
    "# shape: [rows", "# see [1", "# values in [0, 1)", "# TODO: handle [nested", "# [{w}",
    "# expected [{w}, ...", "# range [{n}, {m})", "# note: {w} [{w2}", "# index [i",
)  # fmt: skip


class _BracketCountingBase(PairTask):
    class_names = ("depth 1", "depth 2")
    rows = (2, 3)
    cols = (2, 4)
    fillers = (0, 3)
    distractor = False
    long = False

    def elements(self, rng: random.Random, k: int) -> list[str]:
        kind = rng.choice(["int", "int", "neg", "float", "name", "const"])
        if kind == "int" or self.long:  # long lists: small numbers keep them within n_ctx
            return [str(rng.randint(0, 99)) for _ in range(k)]
        if kind == "neg":
            return [str(rng.randint(-9, 9)) for _ in range(k)]
        if kind == "float":
            return [f"{rng.randint(0, 9)}.{rng.randint(0, 9)}" for _ in range(k)]
        if kind == "name":
            return [rng.choice("abcdxyzuvw") for _ in range(k)]
        return [rng.choice(["None", "True", "False", "0"]) for _ in range(k)]

    def draw(self, rng: random.Random) -> Pair:
        sc = scaffold(rng, forbid="[]", fillers=self.fillers)
        pad = " " * sc.indent
        r, c = rng.randint(*self.rows), rng.randint(*self.cols)
        elems = self.elements(rng, r * c)
        rows = [", ".join(elems[i * c : (i + 1) * c]) for i in range(r)]
        lines = []
        if self.distractor:
            comment = rng.choice(BRACKET_COMMENTS).format(
                w=rng.choice(NAMES),
                w2=rng.choice(NAMES),
                n=rng.randint(0, 9),
                m=rng.randint(10, 99),
            )
            lines.append(pad + comment)
        head = f"{pad}{rng.choice(NAMES)} = {rng.choice(LIST_CALLS)}"
        flat = head + "[" + ", ".join(elems)
        nested = head + "[[" + "], [".join(rows)
        contexts = (sc.context(*lines, flat), sc.context(*lines, nested))
        return pair(contexts, ("])", "]"), ("\n", "])\n"))

    def oracle(self, context: str) -> str:
        code = "\n".join(line.split("#")[0] for line in context.split("\n"))
        depth = code.count("[") - code.count("]")
        return "])" if depth == 1 else "]"


@register
class BracketCounting(_BracketCountingBase):
    name = "bracket_counting"
    description = (
        "end of the last element of a list passed to a call: `])` at depth 1, `]` at depth 2 "
        "(then `])`): `]]` is not one token, so depth decides between these two"
    )


@register
class BracketCountingDistractor(_BracketCountingBase):
    name = "bracket_counting_distractor"
    description = "bracket_counting after a comment line holding an unmatched `[` (paper: fails)"
    source = "adversarial"
    distractor = True


@register
class BracketCountingLong(_BracketCountingBase):
    name = "bracket_counting_long"
    description = "bracket_counting with very long lists (context dilution; paper: fails)"
    source = "adversarial"
    long = True
    rows = (3, 5)
    cols = (8, 12)
    fillers = (0, 1)
