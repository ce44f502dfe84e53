"""The generated-idioms corpus component and its `idioms:N` / `stdlib` corpus sources."""

from __future__ import annotations

import ast
import io
import tokenize

import pytest

from sparsecircuits.config import DataConfig, load_config, parse_override
from sparsecircuits.data.corpus import collect_corpus
from sparsecircuits.data.idioms import (
    MAX_LINES,
    MIN_LINES,
    generate_idiom_file,
    generate_idiom_files,
)
from sparsecircuits.data.prepare import fingerprint, prepare_data
from sparsecircuits.data.shards import TokenShard
from sparsecircuits.data.tokenizer import load_tokenizer
from sparsecircuits.errors import DataError
from sparsecircuits.tasks import SplitSizes, all_tasks


def _quote_kinds(text: str) -> set[str]:
    """The opening quote characters of the file's string literals (f-strings included)."""
    kinds = set()
    starts = {tokenize.STRING, getattr(tokenize, "FSTRING_START", tokenize.STRING)}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in starts:
            kinds.add(tok.string.lstrip("rbfuRBFU")[0])
    return kinds


def _is_container(node: ast.AST) -> bool:
    return isinstance(node, (ast.List, ast.Dict, ast.Tuple, ast.Set))


def _nested(node: ast.AST) -> bool:
    if isinstance(node, ast.Dict):
        return any(_is_container(v) for v in node.values)
    return isinstance(node, (ast.List, ast.Tuple, ast.Set)) and any(
        _is_container(e) for e in node.elts
    )


def _initialised(tree: ast.AST, test) -> set[str]:
    """Targets (as source text: `seen`, `self.seen`) assigned a value that passes `test`."""
    return {
        ast.unparse(t)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and test(node.value)
        for t in node.targets
    }


def _is_empty_set(v: ast.AST) -> bool:
    return isinstance(v, ast.Call) and ast.unparse(v) == "set()"


def _is_empty_str(v: ast.AST) -> bool:
    return isinstance(v, ast.Constant) and v.value == ""


def _added_to(tree: ast.AST) -> set[str]:
    return {
        ast.unparse(node.func.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add"
    }


def _plus_assigned(tree: ast.AST) -> set[str]:
    return {
        ast.unparse(node.target)
        for node in ast.walk(tree)
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add)
    }


def _has_init_copying_params(tree: ast.AST) -> bool:
    """A class whose __init__ has `self.x = x` for a parameter x."""
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                params = {a.arg for a in fn.args.args}
                for stmt in fn.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and ast.unparse(stmt.targets[0]) == f"self.{ast.unparse(stmt.value)}"
                        and ast.unparse(stmt.value) in params
                    ):
                        return True
    return False


def _with_open(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.With)
        and any(
            isinstance(item.context_expr, ast.Call)
            and ast.unparse(item.context_expr.func) == "open"
            and item.optional_vars is not None
            for item in node.items
        )
        for node in ast.walk(tree)
    )


def idioms_in(text: str) -> set[str]:
    """Which of the required idioms a file contains."""
    tree = ast.parse(text)
    nodes = list(ast.walk(tree))
    found = {f"quote {q}" for q in _quote_kinds(text)}
    checks = {
        "nested container": any(_nested(n) for n in nodes),
        "for": any(isinstance(n, ast.For) for n in nodes),
        "while": any(isinstance(n, ast.While) for n in nodes),
        "with open": _with_open(tree),
        "set() then .add": bool(_initialised(tree, _is_empty_set) & _added_to(tree)),
        '"" then +=': bool(_initialised(tree, _is_empty_str) & _plus_assigned(tree)),
        "class with __init__": _has_init_copying_params(tree),
        "lambda": any(isinstance(n, ast.Lambda) for n in nodes),
        "f-string": any(isinstance(n, ast.JoinedStr) for n in nodes),
        "ternary": any(isinstance(n, ast.IfExp) for n in nodes),
    }
    return found | {name for name, ok in checks.items() if ok}


REQUIRED = {
    'quote "', "quote '", "nested container", "for", "while", "with open", "set() then .add",
    '"" then +=', "class with __init__", "lambda", "f-string", "ternary",
}  # fmt: skip


def test_every_file_compiles_and_has_20_to_80_lines():
    for seed in (0, 1):
        for f in generate_idiom_files(250, seed):
            compile(f.text, f.path, "exec")  # SyntaxError on invalid code, stricter than parse
            ast.parse(f.text)
            assert MIN_LINES <= f.text.count("\n") <= MAX_LINES, f.path
            assert f.text.endswith("\n") and not f.text.endswith("\n\n")


def test_same_seed_same_files_other_seed_other_files():
    first = generate_idiom_files(40, seed=3)
    assert first == generate_idiom_files(40, seed=3)
    other = generate_idiom_files(40, seed=4)
    assert all(a.text != b.text for a, b in zip(first, other, strict=True))
    assert len({f.text for f in first}) == 40
    # File i depends on (seed, i) alone: a smaller corpus is a prefix of a larger one.
    assert generate_idiom_files(15, seed=3) == first[:15]
    assert first[6].text == generate_idiom_file(7, seed=3)
    assert [f.path for f in first[:2]] == ["idioms/seed3/00001.py", "idioms/seed3/00002.py"]
    assert generate_idiom_files(1, seed=0)[0].path == "idioms/00001.py"
    assert generate_idiom_files(0, seed=0) == []
    with pytest.raises(DataError, match="n_files"):
        generate_idiom_files(-1, seed=0)


def test_every_idiom_occurs_often_and_files_mix_them():
    files = generate_idiom_files(150, seed=0)
    per_file = [idioms_in(f.text) for f in files]
    for idiom in sorted(REQUIRED):
        share = sum(idiom in found for found in per_file) / len(files)
        assert share >= 0.1, f"{idiom} in only {share:.0%} of files"
    counts = [len(found) for found in per_file]
    assert min(counts) >= 3 and sum(counts) / len(counts) >= 6


def test_sets_get_add_and_strings_get_plus_equals_never_the_other_way():
    # What set_or_string-like circuits need: the type of a name decides what follows it.
    for f in generate_idiom_files(200, seed=1):
        tree = ast.parse(f.text)
        sets, texts = _initialised(tree, _is_empty_set), _initialised(tree, _is_empty_str)
        assert not sets & texts, f.path
        assert not sets & _plus_assigned(tree), f.path
        assert not texts & _added_to(tree), f.path


def test_idioms_source_through_collect_corpus():
    corpus = collect_corpus(["idioms:30"])
    assert [f.path for f in corpus.files] == [f"idioms/{i:05d}.py" for i in range(1, 31)]
    assert corpus.files == tuple(generate_idiom_files(30, seed=0))
    assert corpus.skipped == corpus.duplicates == 0
    seeded = collect_corpus(["idioms:30:5"])
    assert seeded.files == tuple(generate_idiom_files(30, seed=5))
    # max_files picks a subset by path hash; each file is still the generated one.
    subset = collect_corpus(["idioms:50"], max_files=10)
    assert len(subset.files) == 10
    assert all(f.text == generate_idiom_file(int(f.path[7:12])) for f in subset.files)


@pytest.mark.stdlib
def test_stdlib_and_idioms_mix_and_empty_sources_mean_stdlib():
    """Reads the machine's real standard library; asserts only how sources combine, which holds
    whatever files that standard library has."""
    assert collect_corpus(["stdlib"], max_files=25) == collect_corpus(max_files=25)
    stdlib = collect_corpus()
    mixed = collect_corpus(["stdlib", "idioms:25:7", "stdlib"])
    generated = generate_idiom_files(25, seed=7)
    assert set(mixed.files) == set(stdlib.files) | set(generated)
    assert len(mixed.files) == len(stdlib.files) + 25
    assert "standard library" in mixed.description and "idioms:25:7" in mixed.description


def test_generated_names_do_not_clobber_a_real_idioms_directory(tmp_path):
    (tmp_path / "idioms").mkdir()
    (tmp_path / "idioms" / "00001.py").write_text("real = True\n")
    corpus = collect_corpus([str(tmp_path), "idioms:2"])
    texts = {f.path: f.text for f in corpus.files}
    assert texts["idioms/00001.py"] == "real = True\n"
    assert texts["generated/idioms/00001.py"] == generate_idiom_file(1)
    assert texts["idioms/00002.py"] == generate_idiom_file(2)


@pytest.mark.parametrize(
    "spec", ["idioms:", "idioms:many", "idioms:0", "idioms:-3", "idioms:5:x", "idioms:1:2:3"]
)
def test_bad_idioms_spec_is_a_one_line_data_error(spec):
    with pytest.raises(DataError, match="idioms:N"):
        collect_corpus([spec])


def test_cache_fingerprint_covers_count_and_seed():
    cfg = DataConfig()

    def fp(spec: str) -> str:
        return fingerprint(collect_corpus([spec]), cfg, 512)

    assert fp("idioms:20") == fp("idioms:20")
    assert len({fp("idioms:20"), fp("idioms:21"), fp("idioms:20:1")}) == 3


def test_prepare_data_builds_shards_from_idioms(tmp_path):
    cfg = DataConfig(sources=("idioms:40",), val_fraction=0.1, test_fraction=0.1,
                     cache_dir=str(tmp_path))  # fmt: skip
    prepared = prepare_data(cfg, vocab_size=300)
    assert sum(prepared.stats["files"].values()) == 40
    tok = load_tokenizer(prepared.tokenizer_path)
    train = tok.decode(TokenShard(prepared.shards["train"]).tokens.tolist())
    assert "def __init__(self" in train and "with open(" in train


def test_user_config_line_mixes_stdlib_and_idioms():
    key, value = parse_override("data.sources=[stdlib, idioms:2000]")
    assert load_config("tiny", {key: value}).data.sources == ("stdlib", "idioms:2000")


def verbatim_hits(contexts: list[str], text: str) -> list[str]:
    """The contexts that occur in `text` as substrings (exact, with a fast pre-check)."""
    # A context inside `text` has each of its interior lines as a whole line of `text`.
    lines = set(text.split("\n"))
    maybe = [c for c in contexts if all(line in lines for line in c.split("\n")[1:-1])]
    return [c for c in maybe if c in text]


@pytest.mark.slow
def test_no_task_test_context_appears_in_a_realistic_idioms_corpus():
    text = "\n".join(f.text for f in generate_idiom_files(2000, seed=0))
    # train=val=0 gives the same test split as the default sizes (splits are hash-bucketed
    # and only ever extended), at a third of the cost.
    sizes = SplitSizes(train=0, val=0, test=SplitSizes().test)
    contexts = {t.name: [ex.context for ex in t.splits(sizes).test] for t in all_tasks()}
    assert len(contexts) >= 20 and all(len(c) == sizes.test for c in contexts.values())
    # The check itself finds a context that was copied in (multi-line and single-line).
    planted = [contexts["class_init"][0], contexts["final_kwarg"][0]]
    assert verbatim_hits(planted, f"{text}\n    {planted[0]}x\n{planted[1]}") == planted
    for name, ctxs in contexts.items():
        hits = verbatim_hits(ctxs, text)
        assert not hits, f"task {name}: test context copied into the idioms corpus: {hits[0]!r}"
