"""A seeded generator of small Python modules made of simple, repetitive idioms.

The paper mixed such a component into its pretraining data so that small models meet the
constructs its tasks probe (quotes, brackets, loops, `with open`, sets and strings, classes,
lambdas, f-strings, ternaries) often and in clean form. Each generated file is a module of
20-80 lines: a few functions and classes whose bodies are drawn from the idioms below, with
variables used consistently (a name set to `set()` gets `.add`, one set to `""` gets `+=`,
`self.x = x` copies the parameter), so the statistics a model learns are the right ones.

Written independently of `sparsecircuits.tasks.templates`, with its own name pools: functions
are `verb_noun` over their own nouns (`tally_orders`), classes two-word CamelCase
(`SongLedger`), never a name the task templates use. Every task context opens with such a def
or class line (after imports or a decorator at most), so none can occur in this corpus
verbatim; tests/data/test_idioms.py checks that on the task test splits.

File `i` depends only on `(seed, i)`, so `generate_idiom_files(100, s)` is the first hundred of
`generate_idiom_files(1000, s)`, and a corpus can build any single file on demand.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sparsecircuits.data.corpus import SourceFile
from sparsecircuits.errors import DataError

MIN_LINES = 20
"""Fewest lines in a generated file."""
MAX_LINES = 80
"""Most lines in a generated file."""

# Collections and one element of each: loops read `for <one> in <many>:`.
_NOUNS = {
    "orders": "order", "songs": "song", "planets": "planet", "recipes": "recipe",
    "tickets": "ticket", "readings": "reading", "scores": "score", "books": "book",
    "cities": "city", "routes": "route", "players": "player", "invoices": "invoice",
    "sensors": "sensor", "photos": "photo", "plants": "plant", "guests": "guest",
    "trips": "trip", "coins": "coin", "letters": "letter", "colors": "color",
    "animals": "animal", "tools": "tool", "parcels": "parcel", "lessons": "lesson",
}  # fmt: skip
_VERBS = (
    "tally", "gather", "summarize", "rank", "group", "tidy", "measure", "pack", "sift",
    "label", "count", "show", "store", "sort", "clean", "pick", "list", "print", "check",
    "rate", "scan", "filter", "index", "bundle",
)  # fmt: skip
_CLASS_HEADS = (
    "Song", "Order", "Planet", "Recipe", "Garden", "Weather", "Library", "Travel", "Coin",
    "Lesson", "Parcel", "Ticket", "Player", "Photo", "Color", "Sensor", "Guest", "Animal",
)  # fmt: skip
_CLASS_TAILS = (
    "Ledger", "Tracker", "Catalog", "Shelf", "Album", "Journal", "Counter", "Planner",
    "Box", "Registry", "Inventory", "Summary", "Board", "Basket",
)  # fmt: skip
# Plain local names (never a keyword); loops, accumulators and results draw from these.
_LOCALS = (
    "total", "best", "worst", "amount", "remaining", "step", "width", "height", "price",
    "weight", "ratio", "level", "limit", "size", "extra", "bonus", "rounds", "tries",
)  # fmt: skip
_TEXTS = ("label", "message", "summary", "title", "caption", "banner", "note", "line")
_SETS = ("seen", "unique", "visited", "kept", "tags", "marks", "chosen", "known")
_WORDS = (
    "hello", "world", "ready", "apple", "red", "green", "blue", "north", "south", "open",
    "closed", "pending", "small", "large", "yes", "no", "morning", "evening", "spring",
    "winter", "fresh", "old", "empty", "full", "first", "second", "lucky", "quiet", "loud",
)  # fmt: skip
# String contents that hold a quote character: the literal must use the other kind.
_QUOTED_WORDS = ("it's done", "don't stop", "we're late", 'say "hi"', 'the "best" one')
_EMPTY = ('""', "''")
_MODULES = ("os", "json", "math", "string", "textwrap", "pathlib", "statistics", "datetime")


@dataclass
class _Scope:
    """Names a function body can rely on."""

    many: str
    """A name bound to a list of items (a parameter or an attribute)."""
    one: str
    """The loop variable for one item of `many`."""
    number: str
    """A name bound to an int."""


def _q(rng: random.Random) -> str:
    return rng.choice("\"'")


def _lit(rng: random.Random, text: str) -> str:
    """`text` as a string literal with a random quote kind (the other one if text holds it)."""
    q = _q(rng)
    if q in text:
        q = "'" if q == '"' else '"'
    return f"{q}{text}{q}"


def _phrase(rng: random.Random, lo: int = 1, hi: int = 3) -> str:
    if rng.random() < 0.15:
        return rng.choice(_QUOTED_WORDS)
    return " ".join(rng.sample(_WORDS, rng.randint(lo, hi)))


def _num(rng: random.Random) -> str:
    return str(rng.randint(0, 99))


def _cond(rng: random.Random, s: _Scope) -> str:
    return rng.choice([
        f"{s.number} > {rng.randint(1, 9)}", f"len({s.many}) > {s.number}", f"not {s.many}",
        f"{s.number} % 2 == 0", f"{s.many}", f"{s.number} is None",
    ])  # fmt: skip


# Idioms: each writes a few complete statements at indentation `pad`.


def _quotes(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    name = rng.choice(_TEXTS)
    shapes = [
        [f"{name} = {_lit(rng, _phrase(rng))}"],
        [f"print({_lit(rng, _phrase(rng))})"],
        [f"{name} = {_lit(rng, _phrase(rng))}", f"print({name}, {_lit(rng, _phrase(rng))})"],
        [f"{name} = {_lit(rng, ', ')}.join({_lit(rng, w)} for _ in range({s.number}))"
         for w in [rng.choice(_WORDS)]],
        [f"for {s.one} in {s.many}:",
         f"    if str({s.one}).startswith({_lit(rng, rng.choice(_WORDS))}):",
         f"        print({_lit(rng, _phrase(rng))})"],
        [f"{name} = {_lit(rng, _phrase(rng))}.upper()", f"{name} = {name}.replace("
         f"{_lit(rng, rng.choice(_WORDS))}, {_lit(rng, rng.choice(_WORDS))})"],
    ]  # fmt: skip
    return [pad + line for line in rng.choice(shapes)]


def _flat_list(rng: random.Random, lo: int = 2, hi: int = 4) -> str:
    return "[" + ", ".join(_num(rng) for _ in range(rng.randint(lo, hi))) + "]"


def _key(rng: random.Random, q: str) -> str:
    return f"{q}{rng.choice(_WORDS)}{q}"


def _nested(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    name = rng.choice(("grid", "table", "matrix", "lookup", "layout", "config", "groups"))
    q = _q(rng)
    kind = rng.randrange(5)
    if kind == 0:  # list of lists, then an index into it
        rows = ", ".join(_flat_list(rng) for _ in range(rng.randint(2, 3)))
        return [f"{pad}{name} = [{rows}]", f"{pad}{s.number} = {name}[0][1]"]
    if kind == 1:  # dict of lists
        k1, k2 = _key(rng, q), _key(rng, q)
        return [
            f"{pad}{name} = {{{k1}: {_flat_list(rng)}, {k2}: {_flat_list(rng, 1, 2)}}}",
            f"{pad}{name}[{k1}].append({_num(rng)})",
        ]
    if kind == 2:  # dict of dicts over several lines
        keys = rng.sample(_WORDS, 3)
        inner = ", ".join(f"{q}{k}{q}: {_num(rng)}" for k in keys[1:])
        return [
            f"{pad}{name} = {{",
            f"{pad}    {q}{keys[0]}{q}: {{{inner}}},",
            f"{pad}    {q}{keys[1]}{q}: {_flat_list(rng)},",
            f"{pad}}}",
            f"{pad}{s.number} = len({name}[{q}{keys[0]}{q}])",
        ]
    if kind == 3:  # list of dicts
        items = [f"{{{q}name{q}: {_lit(rng, rng.choice(_WORDS))}, {q}size{q}: {_num(rng)}}}"
                 for _ in range(rng.randint(2, 3))]  # fmt: skip
        return [f"{pad}{name} = [", *(f"{pad}    {item}," for item in items), f"{pad}]"]
    pairs = ", ".join(f"({_num(rng)}, [{_num(rng)}, {_num(rng)}])" for _ in range(2))
    return [f"{pad}{name} = dict([{pairs}])"]


def _for(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    acc = rng.choice(_LOCALS)
    shapes = [
        [f"{acc} = 0", f"for {s.one} in {s.many}:", f"    {acc} += 1"],
        [f"for index, {s.one} in enumerate({s.many}):",
         f"    print(index, {s.one})"],
        [f"for step in range({s.number}):", f"    {s.many}.append(step * {rng.randint(2, 9)})"],
        [f"for position in range(len({s.many})):",
         f"    {s.many}[position] = {s.many}[position]"],
        [f"{acc} = []", f"for {s.one} in {s.many}:", f"    if {s.one}:",
         f"        {acc}.append({s.one})"],
        ["for row in [[1, 2], [3, 4]]:", "    for cell in row:", f"        {s.number} += cell"],
        [f"for key, value in {{{_lit(rng, 'a')}: 1, {_lit(rng, 'b')}: 2}}.items():",
         "    print(key, value)"],
    ]  # fmt: skip
    return [pad + line for line in rng.choice(shapes)]


def _while(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    i = rng.choice(("i", "n", "k", "tries", "left"))
    shapes = [
        [f"{i} = 0", f"while {i} < {s.number}:", f"    {i} += 1"],
        [f"while {s.many}:", f"    {s.one} = {s.many}.pop()", f"    print({s.one})"],
        [f"{i} = {s.number}", f"while {i} > 0:", f"    {i} -= {rng.randint(1, 3)}"],
        ["while True:", f"    {s.number} += 1", f"    if {s.number} > {rng.randint(10, 99)}:",
         "        break"],
        [f"{i} = 0", f"while {i} < len({s.many}) and {s.many}[{i}]:", f"    {i} += 1"],
    ]  # fmt: skip
    return [pad + line for line in rng.choice(shapes)]


def _with_open(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    q = _q(rng)
    fname = f"{q}{s.many.removeprefix('self.')}.txt{q}"
    shapes = [
        [f"with open({fname}) as fh:", "    text = fh.read()"],
        [f"with open({fname}, {q}r{q}) as src:", "    for raw in src:",
         "        print(raw.strip())"],
        [f"with open({fname}, {q}w{q}) as out:", f"    for {s.one} in {s.many}:",
         f"        out.write(str({s.one}))"],
        [f"with open({fname}, {q}a{q}, encoding={q}utf-8{q}) as log:",
         f"    log.write({_lit(rng, _phrase(rng))})"],
        [f"report_path = {q}report_{s.number}.txt{q}",
         f"with open(report_path, {q}w{q}) as report:",
         f"    report.write(str(len({s.many})))"],
        [f"lines = open({fname}).read().splitlines()"],
    ]  # fmt: skip
    return [pad + line for line in rng.choice(shapes)]


def _set_or_text(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    bag, text = rng.choice(_SETS), rng.choice(_TEXTS)
    empty = rng.choice(_EMPTY)
    kind = rng.randrange(4)
    if kind == 0:
        return [pad + line for line in [
            f"{bag} = set()", f"for {s.one} in {s.many}:", f"    if {s.one} not in {bag}:",
            f"        {bag}.add({s.one})",
        ]]  # fmt: skip
    if kind == 1:
        return [pad + line for line in [
            f"{text} = {empty}", f"for {s.one} in {s.many}:", f"    {text} += str({s.one})",
        ]]  # fmt: skip
    if kind == 2:  # both at once: the type of each name decides what follows it
        lines = [f"{bag} = set()", f"{text} = {empty}"]
        if rng.random() < 0.5:
            lines.reverse()
        lines += [f"for {s.one} in {s.many}:", f"    {bag}.add({s.one})",
                  f"    {text} += {_lit(rng, rng.choice(_WORDS))}"]  # fmt: skip
        return [pad + line for line in lines]
    return [pad + line for line in [
        f"{bag} = set()", f"{bag}.add({_lit(rng, rng.choice(_WORDS))})",
        f"{text} = {empty}", f"{text} += {_lit(rng, _phrase(rng))}",
    ]]  # fmt: skip


def _lambda(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    v, fn = rng.choice(("x", "v", "item", "p")), rng.choice(("double", "scale", "key_fn", "pick"))
    shapes = [
        f"{fn} = lambda {v}: {v} * {rng.randint(2, 9)}",
        f"ordered = sorted({s.many}, key=lambda {v}: str({v}))",
        f"bigger = list(filter(lambda {v}: {v} > {s.number}, range(10)))",
        f"doubled = list(map(lambda {v}: {v} + {v}, range({s.number})))",
        f"{fn} = lambda a, b: a if a > b else b",
        f"longest = max({s.many}, key=lambda {v}: len(str({v})), default=None)",
    ]
    return [pad + rng.choice(shapes)]


def _fstring(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    q, word = _q(rng), rng.choice(_WORDS)
    shapes = [
        f"print(f{q}{{{s.number}}} {s.many}{q})",
        f"{rng.choice(_TEXTS)} = f{q}{word}: {{len({s.many})}}{q}",
        f"print(f{q}{{{s.number}!r}} is {word}{q})",
        f"{rng.choice(_TEXTS)} = f{q}{{{s.number} / 3:.2f}} {word}{q}",
        f"print(f{q}{word} {{{s.number}}} of {{len({s.many})}}{q})",
    ]
    return [pad + rng.choice(shapes)]


def _ternary(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    a, b = rng.sample(_WORDS, 2)
    name = rng.choice(_TEXTS + _LOCALS)
    shapes = [
        f"{name} = {_lit(rng, a)} if {_cond(rng, s)} else {_lit(rng, b)}",
        f"{name} = {s.number} if {s.number} > {rng.randint(1, 9)} else {rng.randint(0, 9)}",
        f"print({_lit(rng, a)} if {s.many} else {_lit(rng, b)})",
        f"{name} = len({s.many}) if {s.many} is not None else 0",
    ]
    return [pad + rng.choice(shapes)]


def _branch(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    lines = [f"if {_cond(rng, s)}:", f"    {s.number} = {_num(rng)}"]
    if rng.random() < 0.5:
        lines += [f"elif {_cond(rng, s)}:", f"    {s.number} += {rng.randint(1, 9)}"]
    lines += ["else:", f"    {s.number} = 0"]
    return [pad + line for line in lines]


def _comprehension(rng: random.Random, s: _Scope, pad: str) -> list[str]:
    v = rng.choice(("x", "v", "n"))
    shapes = [
        [f"{rng.choice(_LOCALS)} = [{v} * 2 for {v} in range({s.number})]"],
        [f"{rng.choice(_SETS)} = {{str({v}) for {v} in {s.many}}}"],
        [f"sizes = {{str({v}): len(str({v})) for {v} in {s.many}}}"],
        [
            f"low, high = {rng.randint(0, 9)}, {s.number}",
            "if low > high:",
            "    low, high = high, low",
        ],
    ]
    return [pad + line for line in rng.choice(shapes)]


_IDIOMS: tuple[Callable[[random.Random, _Scope, str], list[str]], ...] = (
    _quotes,
    _nested,
    _for,
    _while,
    _with_open,
    _set_or_text,
    _lambda,
    _fstring,
    _ternary,
)
_EXTRAS = (_branch, _comprehension)


def _body(rng: random.Random, s: _Scope, pad: str, k: int) -> list[str]:
    lines: list[str] = []
    for idiom in rng.sample(_IDIOMS + _EXTRAS, k):  # k different kinds: a body mixes idioms
        lines += idiom(rng, s, pad)
    return lines


# Top-level units: a function, a class, module constants.


def _function(rng: random.Random) -> tuple[list[str], str]:
    many = rng.choice(list(_NOUNS))
    number = rng.choice(("limit", "count", "size", "start", "level"))
    name = f"{rng.choice(_VERBS)}_{many}"
    default = f"={rng.randint(1, 9)}" if rng.random() < 0.5 else ""
    s = _Scope(many, _NOUNS[many], number)
    lines = [f"def {name}({many}, {number}{default}):"]
    if rng.random() < 0.3:
        lines.append(f'    """{_phrase(rng, 2, 4).capitalize()}."""')
    lines += _body(rng, s, "    ", rng.randint(2, 4))
    ret = rng.choice([many, number, f"len({many})", f"{number} if {many} else None"])
    lines.append(f"    return {ret}")
    return lines, f"{name}([{_num(rng)}, {_num(rng)}], {rng.randint(1, 5)})"


def _class(rng: random.Random) -> tuple[list[str], str]:
    name = rng.choice(_CLASS_HEADS) + rng.choice(_CLASS_TAILS)
    many = rng.choice(list(_NOUNS))
    one = _NOUNS[many]
    params = ["name", *rng.sample(("limit", "owner", "color", "size", "kind"), rng.randint(0, 2))]
    # Parameters after `name` get `=None` from a random point on (defaults come last).
    first_default = rng.randint(1, len(params))
    defaults = [f"{p}=None" if i >= first_default else p for i, p in enumerate(params)]
    bag, text = rng.choice(_SETS), rng.choice(_TEXTS)
    lines = [f"class {name}:"]
    if rng.random() < 0.4:
        lines += [f'    """A {rng.choice(_WORDS)} {one} {rng.choice(_CLASS_TAILS).lower()}."""', ""]
    lines.append(f"    def __init__(self, {', '.join(defaults)}):")
    lines += [f"        self.{p} = {p}" for p in params]
    lines += [f"        self.{many} = []", f"        self.{bag} = set()",
              f"        self.{text} = {rng.choice(_EMPTY)}"]  # fmt: skip
    lines += ["", f"    def add_{one}(self, {one}):"]
    if rng.random() < 0.5:
        lines += [f"        if {one} in self.{bag}:", "            return False"]
    lines += [f"        self.{bag}.add({one})", f"        self.{many}.append({one})",
              f"        self.{text} += str({one})", "        return True"]  # fmt: skip
    # One more method whose body is drawn from the idioms, over the instance's list.
    method = rng.choice(("describe", "summary", "report", "refresh", "tidy_up"))
    lines += ["", f"    def {method}(self, level=0):"]
    lines += _body(rng, _Scope(f"self.{many}", one, "level"), "        ", rng.randint(1, 3))
    lines.append(f"        return f{_lit(rng, '{self.name}: {len(self.' + many + ')} ' + many)}")
    return lines, f"{name}({_lit(rng, rng.choice(_WORDS))}).{method}()"


def _constants(rng: random.Random) -> tuple[list[str], str]:
    lines: list[str] = []
    for name in rng.sample(("DEFAULTS", "COLORS", "LIMITS", "NAMES", "TABLE"), rng.randint(1, 2)):
        q = _q(rng)
        if rng.random() < 0.5:
            inner = ", ".join(f"{q}{w}{q}: {_flat_list(rng, 1, 3)}" for w in rng.sample(_WORDS, 2))
            lines.append(f"{name} = {{{inner}}}")
        else:
            lines.append(f"{name} = [{', '.join(_lit(rng, w) for w in rng.sample(_WORDS, 3))}]")
    return lines, f"print({lines[0].split(' = ')[0]})"


def _header(rng: random.Random) -> list[str]:
    lines: list[str] = []
    if rng.random() < 0.5:
        lines.append(f'"""{_phrase(rng, 2, 4).capitalize()} helpers."""')
    if rng.random() < 0.6:
        lines += [""] if lines else []
        lines += [f"import {m}" for m in sorted(rng.sample(_MODULES, rng.randint(1, 2)))]
    return lines


def generate_idiom_file(index: int, seed: int = 0) -> str:
    """The text of file `index` of the idioms corpus for `seed` (a valid Python module)."""
    rng = random.Random(f"sparsecircuits.idioms:{seed}:{index}")
    lines = _header(rng)
    calls: list[str] = []
    target = rng.randint(MIN_LINES, MAX_LINES - 10)

    def n_lines(n_body: int, n_calls: int) -> int:  # body + 2 blank lines + `if __name__` + calls
        return n_body + 3 + n_calls

    units = (_function, _function, _class, _constants)
    while n_lines(len(lines), len(calls)) < target:
        unit, call = rng.choice(units)(rng)
        sep = ["", ""] if lines else []
        longer = n_lines(len(lines) + len(sep) + len(unit), len(calls) + 1)
        # A unit is at most ~40 lines, so a file shorter than MIN_LINES can always take one.
        if longer > MAX_LINES and n_lines(len(lines), len(calls)) >= MIN_LINES:
            break
        lines += sep + unit
        calls.append(call)
    lines += ["", "", 'if __name__ == "__main__":', *(f"    {c}" for c in calls)]
    return "\n".join(lines) + "\n"


def idiom_path(index: int, seed: int = 0) -> str:
    """Corpus path of file `index`: `idioms/00001.py`, under `idioms/seed<s>/` for seed != 0."""
    folder = "idioms" if seed == 0 else f"idioms/seed{seed}"
    return f"{folder}/{index:05d}.py"


def generate_idiom_files(n_files: int, seed: int) -> list[SourceFile]:
    """`n_files` generated modules (indices 1..n_files) for `seed`, named by `idiom_path`."""
    if n_files < 0:
        raise DataError(f"n_files must be >= 0, got {n_files}")
    return [
        SourceFile(idiom_path(i, seed), generate_idiom_file(i, seed)) for i in range(1, n_files + 1)
    ]
