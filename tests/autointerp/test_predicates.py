"""Predicates over hand-written Python: each label where a reader of the code would put it."""

import re

import numpy as np

from sparsecircuits.autointerp.predicates import PredicateTable, label_file, phrase
from sparsecircuits.autointerp.text import DecodedText, decode


def _labels(src: str) -> dict[str, list[set[str]]]:
    """Labels of every word/punctuation run of `src` (a stand-in for BPE tokens), by text."""
    spans = [m.span() for m in re.finditer(r" ?\w+| ?[^\w\s]+|\s+", src)]
    decoded = DecodedText(src, np.array([a for a, _ in spans]), np.array([b for _, b in spans]))
    out: dict[str, list[set[str]]] = {}
    for (a, b), names in zip(spans, label_file(decoded), strict=True):
        out.setdefault(src[a:b].strip() or src[a:b], []).append(set(names))
    return out


def test_strings_know_their_quote_and_the_place_in_them():
    got = _labels("x = f(key='abc', other=\"xyz\")\n")
    assert {"string:single", "string:any", "string:first"} <= got["abc"][0]
    assert "string:double" not in got["abc"][0]
    assert {"string:double", "string:first"} <= got["xyz"][0]
    # `='` opens the string although its first character is the `=`
    assert {"string:open", "string:single"} <= got["='"][0]
    assert "string:close" in got["',"][0]
    assert "string:any" not in got["key"][0] and "role:kwarg" in got["key"][0]


def test_brackets_depth_and_kind():
    got = _labels("y = [a, (b, {c: d})]\n")
    assert {"depth:1", "bracket:["} <= got["a"][0] and "depth:2" not in got["a"][0]
    assert {"depth:2", "bracket:("} <= got["b"][0]
    assert {"depth:2", "bracket:{"} <= got["c"][0]
    assert "depth:1" not in got["y"][0]


def test_keywords_statements_and_lines():
    got = _labels("import os\nfor i in range(3):\n    if i:\n        return i\n")
    assert {"after:import", "stmt:import", "role:import"} <= got["os"][0]
    assert {"line:start", "indent:0", "stmt:for"} <= got["for"][0]
    assert {"after:in", "role:call", "stmt:for"} <= got["range"][0]
    assert {"line:start", "indent:2", "stmt:return"} <= got["return"][0]
    assert "after:return" in got["i"][-1] and "line:start" not in got["i"][-1]


def test_def_header_parameters_and_roles():
    got = _labels("class A(B):\n    def run(self, n=1):\n        self.n = n  # keep\n")
    assert {"role:classname", "header:class"} <= got["A"][0]
    assert {"role:funcname", "header:def"} <= got["run"][0]
    assert {"role:param", "role:self", "header:params"} <= got["self"][0]
    assert {"role:param", "header:params"} <= got["n"][0]
    assert "header:def" not in got["self"][1] and "role:attribute" not in got["self"][1]
    assert "role:attribute" in got["n"][1]
    assert {"class:comment"} <= got["keep"][0]


def test_docstrings_and_fstrings():
    got = _labels('def f():\n    """Doc."""\n    return f"{x}!"\n')
    assert {"string:doc", "string:triple", "string:double"} <= got["Doc"][0]
    assert "string:f" in got["x"][0] and "string:doc" not in got["x"][0]


def test_a_file_tokenize_cannot_finish_keeps_labels_before_the_error():
    got = _labels("if x:\n        a = 1\n    b = 2\n")  # the dedent matches no block
    assert {"class:name", "indent:1"} <= got["a"][0]  # labelled: before the error
    assert got["b"][0] == {"tok:b"}  # after it: the token's text only


def test_decode_maps_tokens_that_split_a_character_to_its_offset():
    table = [b"x", "\u00e9".encode()[:1], "\u00e9".encode()[1:], b"y"]
    d = decode([0, 1, 2, 3], table)
    assert d.text == "x\u00e9y"
    assert d.starts.tolist() == [0, 1, 1, 2]


def test_predicate_table_keeps_frequent_names_and_reuses_them():
    table = PredicateTable.from_labels([["a", "b"], ["a"], ["c"]], min_count=2)
    assert table.names == ("a",)
    other = PredicateTable.from_labels([["c"], ["a"]], names=table.names)
    assert other.matrix.tolist() == [[False], [True]]


def test_phrases_are_english():
    assert phrase("string:single") == "inside a single-quoted string"
    assert phrase("after:import") == "right after the keyword `import`"
    assert phrase("tok:)") == "on the token `)`"
