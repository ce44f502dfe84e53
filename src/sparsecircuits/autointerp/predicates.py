"""Predicates over Python source: what each BPE token is and where it sits, from `tokenize`.

Every token of a file gets a set of predicate names, `family:value` (docs/autointerp.md):

    tok:X          the token's text is X (leading/trailing spaces stripped)
    class:K        keyword, name, number, op, comment, space, indent, newline
    string:Q       inside a string: any, single, double, triple, f, bytes, raw, doc; and the
                   token's place in it: open (holds the opening quote), first (first token after
                   it), close (holds the closing quote)
    depth:N        inside N or more brackets (1, 2); bracket:( [ { the innermost one;
                   bracket:open / bracket:close on the bracket itself
    after:K        the previous Python token is K (a keyword or an operator)
    stmt:K         the logical line starts with keyword K (or @, a decorator)
    line:start     the first token of a line; indent:N the block depth (0, 1, 2, 3 = 3+)
    header:def     in a def header (up to its colon), header:class, header:params
    role:R         an identifier's role: funcname, classname, attribute, call, kwarg,
                   assigned, param, self, import

Labels come from the standard `tokenize` module over the decoded text, mapped to BPE tokens by
character offsets (a BPE token takes the Python token holding its first non-space character).
A file `tokenize` cannot finish keeps the labels of the part before the error; the rest gets
only its token text and class.
"""

from __future__ import annotations

import io
import keyword
import token as pytoken
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsecircuits.autointerp.text import DecodedText

_OPEN, _CLOSE = "([{", ")]}"
_AFTER_OPS = frozenset(". , = : ( [ { -> == + - * % @ ** ) ] }".split())
"""Operators worth an `after:` predicate (the rest are too rare to matter)."""
_SKIP = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE,
         tokenize.ENCODING, tokenize.ENDMARKER}  # fmt: skip
_FSTRING_START = getattr(pytoken, "FSTRING_START", -1)  # Python >= 3.12 splits f-strings
_FSTRING_END = getattr(pytoken, "FSTRING_END", -1)
_FSTRING_MIDDLE = getattr(pytoken, "FSTRING_MIDDLE", -1)


@dataclass
class _PyTok:
    """One Python token with the context labels every BPE token inside it shares."""

    type: int
    string: str
    start: int  # character offsets into the file's text
    end: int
    labels: list[str]
    string_info: tuple[int, int] | None = None  # (opening length, closing length) of a string


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            offsets.append(i + 1)
    return offsets


def _string_labels(s: str) -> tuple[list[str], int, int]:
    """Labels of a STRING token (3.11: whole literal incl. prefix) and its quote lengths."""
    i = 0
    while i < len(s) and s[i] not in "'\"":
        i += 1
    prefix, rest = s[:i].lower(), s[i:]
    if not rest:
        return ["string:any"], 0, 0
    q = rest[0]
    triple = rest.startswith(q * 3)
    qlen = 3 if triple else 1
    labels = ["string:any", "string:single" if q == "'" else "string:double"]
    if triple:
        labels.append("string:triple")
    labels += [f"string:{name}" for flag, name in (("f", "f"), ("b", "bytes"), ("r", "raw"))
               if flag in prefix]  # fmt: skip
    return labels, i + qlen, qlen


def _python_tokens(text: str) -> list[_PyTok]:
    """Python tokens of `text` with context labels (stops quietly where tokenize fails)."""
    lines = _line_offsets(text)
    raw: list[tokenize.TokenInfo] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            raw.append(tok)
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass  # keep what came before the error
    sig = [t for t in raw if t.type not in _SKIP]
    next_sig: dict[int, tokenize.TokenInfo | None] = {}
    for a, b in zip(sig, [*sig[1:], None], strict=True):
        next_sig[id(a)] = b
    out: list[_PyTok] = []
    stack: list[str] = []
    fstrings: list[list[str]] = []  # open f-strings (3.12+), each with its string labels
    indent = 0
    stmt: str | None = None
    header: str | None = None
    prev: tokenize.TokenInfo | None = None  # previous significant token
    line_start = True
    at_stmt_start = True
    for idx, tok in enumerate(raw):
        t = tok.type
        if t == tokenize.INDENT:
            indent += 1
            continue
        if t == tokenize.DEDENT:
            indent -= 1
            continue
        if t in (tokenize.NEWLINE, tokenize.NL):
            line_start = True
            if t == tokenize.NEWLINE:  # `after:` does not reach across statements
                at_stmt_start, stmt, header, prev = True, None, None, None
            continue
        if t in (tokenize.ENCODING, tokenize.ENDMARKER):
            continue
        start = lines[tok.start[0] - 1] + tok.start[1] if tok.start[0] - 1 < len(lines) else 0
        end = lines[tok.end[0] - 1] + tok.end[1] if tok.end[0] - 1 < len(lines) else len(text)
        s = tok.string
        if t == tokenize.COMMENT:
            out.append(_PyTok(t, s, start, end, ["class:comment", f"indent:{min(indent, 3)}"]))
            continue
        is_kw = t == tokenize.NAME and keyword.iskeyword(s)
        if at_stmt_start:
            stmt = s if is_kw else ("@" if s == "@" else None)
            if s in ("def", "class"):
                header = s
            at_stmt_start = False
        elif s in ("def", "class") and prev is not None and prev.string == "async":
            header = s
        closing = t == tokenize.OP and s in _CLOSE
        if closing and stack:
            stack.pop()
        labels = [f"indent:{min(indent, 3)}"]
        if stack:
            labels.append("depth:1")
            if len(stack) >= 2:
                labels.append("depth:2")
            labels.append(f"bracket:{stack[-1]}")
        if t == tokenize.OP and s in _OPEN:
            labels.append("bracket:open")
            stack.append(s)
        elif closing:
            labels.append("bracket:close")
        if line_start:
            labels.append("line:start")
        if stmt is not None:
            labels.append(f"stmt:{stmt}")
        if header is not None:
            labels.append(f"header:{header}")
            if header == "def" and stack and not (t == tokenize.OP and s == "(" and len(stack) == 1):
                labels.append("header:params")
        if prev is not None and prev.type == tokenize.NAME and keyword.iskeyword(prev.string):
            labels.append(f"after:{prev.string}")
        elif prev is not None and prev.type == tokenize.OP and prev.string in _AFTER_OPS:
            labels.append(f"after:{prev.string}")
        if fstrings:
            labels += fstrings[-1]
        info = None
        if t == tokenize.STRING:
            slabels, open_len, qlen = _string_labels(s)
            labels += slabels
            if line_start and _ends_statement(raw, idx):
                labels.append("string:doc")
            info = (open_len, qlen)
        elif t == _FSTRING_START:
            slabels, open_len, qlen = _string_labels(s + "x")
            fstrings.append(slabels)
            labels += [*slabels, "string:open"]
        elif t == _FSTRING_END:
            labels.append("string:close")
            if fstrings:
                fstrings.pop()
        if t == tokenize.NAME:
            labels.append("class:keyword" if is_kw else "class:name")
            if not is_kw:
                labels += _roles(tok, prev, next_sig.get(id(tok)), stack, stmt, header)
        elif t == tokenize.NUMBER:
            labels.append("class:number")
        elif t == tokenize.OP:
            labels.append("class:op")
        if header is not None and t == tokenize.OP and s == ":" and not stack:
            header = None  # the colon ends the header (it is still labelled as part of it)
        out.append(_PyTok(t, s, start, end, labels, info))
        prev = tok
        line_start = False
    return out


def _ends_statement(raw: list[tokenize.TokenInfo], i: int) -> bool:
    """Whether the token after `raw[i]` (ignoring comments) ends the logical line."""
    for nxt in raw[i + 1 :]:
        if nxt.type == tokenize.COMMENT:
            continue
        return nxt.type in (tokenize.NEWLINE, tokenize.ENDMARKER)
    return True


def _roles(tok, prev, nxt, stack: list[str], stmt: str | None, header: str | None) -> list[str]:
    """Roles of an identifier (several may hold: `self` passed as a keyword argument ...)."""
    s, p = tok.string, prev.string if prev is not None else ""
    n = nxt.string if nxt is not None else ""
    roles = []
    if p == "def":
        roles.append("role:funcname")
    elif p == "class":
        roles.append("role:classname")
    elif p == ".":
        roles.append("role:attribute")
    if n == "(" and p not in ("def", "class"):
        roles.append("role:call")
    if n == "=" and stack and header is None:
        roles.append("role:kwarg")
    elif n == "=" and not stack:
        roles.append("role:assigned")
    if header == "def" and stack and n in (",", ")", "=", ":") and p in ("(", ",", "*", "**"):
        roles.append("role:param")
    if s == "self":
        roles.append("role:self")
    if stmt in ("import", "from") and p != "from":
        roles.append("role:import")
    return roles


def label_file(decoded: DecodedText) -> list[list[str]]:
    """Predicate names of every BPE token of one whole file (see the module docstring)."""
    text = decoded.text
    pytoks = _python_tokens(text)
    owner = np.full(len(text) + 1, -1, dtype=np.int64)  # character -> Python token index
    for k, pt in enumerate(pytoks):
        owner[pt.start : pt.end] = k
    labels: list[list[str]] = []
    last_before = -1
    for start, end in zip(decoded.starts.tolist(), decoded.ends.tolist(), strict=True):
        piece = text[start:end]
        stripped = piece.strip()
        names = [f"tok:{stripped}"] if stripped else []
        first = start + (len(piece) - len(piece.lstrip()))
        k = int(owner[first]) if stripped else int(owner[start])
        if k >= 0:
            last_before = k
            pt = pytoks[k]
            names += pt.labels
            if pt.string_info is not None:
                open_len, qlen = pt.string_info
                if start < pt.start + open_len:
                    names.append("string:open")
                elif start == pt.start + open_len:
                    names.append("string:first")
                if start < pt.end and end > pt.end - qlen and end > pt.start + open_len:
                    names.append("string:close")
            last = int(owner[max(first, end - 1)])
            if last != k and last >= 0 and pytoks[last].string_info is not None:
                # `='` or `("`: the token also opens a string (its first character is not it)
                names += [n for n in pytoks[last].labels if n.startswith("string:")]
                names.append("string:open")
        elif not stripped:  # whitespace between Python tokens
            while last_before + 1 < len(pytoks) and pytoks[last_before + 1].start < start:
                last_before += 1
            if "\n" in piece:
                names.append("class:newline")
            elif start == 0 or text[start - 1] == "\n":
                names += ["class:indent", "line:start"]
            else:
                names.append("class:space")
            if last_before >= 0:  # whitespace shares its bracket and statement context
                names += [n for n in pytoks[last_before].labels
                          if n.startswith(("depth:", "bracket:(", "bracket:[", "bracket:{",
                                           "stmt:", "header:"))]  # fmt: skip
        labels.append(names)
    return labels


@dataclass(frozen=True)
class PredicateTable:
    """Which predicate holds at which token: `matrix[i, j]` for token i and `names[j]`."""

    names: tuple[str, ...]
    matrix: np.ndarray  # [n_tokens, n_predicates] bool

    @classmethod
    def from_labels(cls, labels: Sequence[Sequence[str]], min_count: int = 1,
                    names: Sequence[str] | None = None) -> PredicateTable:  # fmt: skip
        """Predicates named at least `min_count` times (or exactly `names`, in that order)."""
        if names is None:
            counts: dict[str, int] = {}
            for row in labels:
                for n in set(row):
                    counts[n] = counts.get(n, 0) + 1
            names = sorted(n for n, c in counts.items() if c >= min_count)
        index = {n: j for j, n in enumerate(names)}
        matrix = np.zeros((len(labels), len(names)), dtype=bool)
        for i, row in enumerate(labels):
            cols = [index[n] for n in row if n in index]
            matrix[i, cols] = True
        return cls(tuple(names), matrix)

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, self.names.index(name)]


_FAMILY_PHRASES = {
    "class:keyword": "on keywords", "class:name": "on identifiers",
    "class:number": "on number literals", "class:op": "on operators and punctuation",
    "class:comment": "inside comments", "class:space": "on spaces between tokens",
    "class:indent": "on indentation", "class:newline": "on line breaks",
    "string:any": "inside a string", "string:single": "inside a single-quoted string",
    "string:double": "inside a double-quoted string",
    "string:triple": "inside a triple-quoted string", "string:f": "inside an f-string",
    "string:bytes": "inside a bytes literal", "string:raw": "inside a raw string",
    "string:doc": "inside a docstring", "string:open": "on a string's opening quote",
    "string:first": "just after a string's opening quote",
    "string:close": "on a string's closing quote",
    "depth:1": "inside brackets", "depth:2": "inside nested brackets",
    "bracket:(": "inside parentheses", "bracket:[": "inside square brackets",
    "bracket:{": "inside braces", "bracket:open": "on an opening bracket",
    "bracket:close": "on a closing bracket",
    "line:start": "at the start of a line", "indent:0": "at the top level (no indent)",
    "indent:1": "one block deep", "indent:2": "two blocks deep",
    "indent:3": "three or more blocks deep",
    "header:def": "in a def header", "header:class": "in a class header",
    "header:params": "in a function's parameter list",
    "role:funcname": "on the name of a function being defined",
    "role:classname": "on the name of a class being defined",
    "role:attribute": "on attribute names (after a dot)",
    "role:call": "on the name of a called function", "role:kwarg": "on keyword-argument names",
    "role:assigned": "on assignment targets", "role:param": "on parameter names",
    "role:self": "on `self`", "role:import": "on imported names",
    "stmt:@": "in a decorator line",
}  # fmt: skip


def phrase(name: str) -> str:
    """A predicate as an English phrase that can follow "fires": 'inside a docstring'."""
    if name in _FAMILY_PHRASES:
        return _FAMILY_PHRASES[name]
    family, _, value = name.partition(":")
    if family == "tok":
        return f"on the token `{value}`"
    if family == "after":
        kind = "keyword " if keyword.iskeyword(value) else ""
        return f"right after the {kind}`{value}`"
    if family == "stmt":
        return f"in a `{value}` statement"
    return name
