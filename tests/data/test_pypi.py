"""The `pypi:LIST` corpus source: the committed list, wheel reading, pip fetching and the cache.

No test touches the network: wheels are built here (a wheel is a zip file) and served to the
real pip from a local directory (`PIP_NO_INDEX=1`, `PIP_FIND_LINKS=DIR`), or placed straight
into the cache.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from sparsecircuits.config import DataConfig
from sparsecircuits.data.corpus import SourceFile, collect_corpus
from sparsecircuits.data.prepare import open_prepared, prepare_data
from sparsecircuits.data.pypi import (
    CACHE_SUBDIR,
    HELD_OUT_PACKAGES,
    MAX_FILE_BYTES,
    list_path,
    normalize_name,
    parse_list,
    pip_tag_args,
    read_list,
    wheel_py_files,
)
from sparsecircuits.errors import DataError

# The packages issue 12 reserves for held-out evaluation, copied verbatim from the issue (not
# from the module), so that shrinking HELD_OUT_PACKAGES cannot make this test pass silently.
ISSUE_HELD_OUT = """moto, botocore, boto3, awscli, s3transfer, ipython, docutils,
aws-sam-translator, prompt-toolkit, werkzeug, docker, cffi, trio, libcst, pyasn1,
graphql-core, parso, cfn-lint, joserfc, executing, jsonpath-ng, regex, pycparser,
referencing, hypothesis, jedi, traitlets, aws-xray-sdk, py-cpuinfo, charset-normalizer,
jsonpatch, flask"""

MODULE = "def greet(name):\n    return 'hello ' + name\n"


def make_wheel(directory: Path, name: str, version: str, files: dict[str, bytes | str]) -> Path:
    """A minimal valid py3-none-any wheel holding `files` (member path -> contents)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{dist}-py3-none-any.whl"
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in {**files, **meta}.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_line(wheel: Path, name: str, version: str, digest: str | None = None) -> str:
    return f"{name}=={version} {wheel.name} sha256:{digest or sha256(wheel)}\n"


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A local directory pip takes wheels from, with the network index switched off."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "no-pip.conf"))  # ignore ~/.pip
    return links


# --- the committed list ---------------------------------------------------------------------


def test_the_committed_list_holds_none_of_the_held_out_packages():
    text = list_path("python").read_text(encoding="utf-8")
    listed = {
        normalize_name(line.split("==", 1)[0])
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }
    held_out = {normalize_name(n) for n in re.split(r"[,\s]+", ISSUE_HELD_OUT) if n}
    assert len(held_out) == 32
    assert held_out <= HELD_OUT_PACKAGES
    assert not listed & held_out


def test_the_committed_list_pins_50_to_200_pure_python_wheels():
    wheels = read_list("python")
    assert 50 <= len(wheels) <= 200
    for wheel in wheels:
        assert wheel.filename.endswith("-none-any.whl"), wheel.filename
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256)


# --- the list format ------------------------------------------------------------------------

GOOD = "demo==1.0 demo-1.0-py3-none-any.whl sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("flask==3.0 flask-3.0-py3-none-any.whl sha256:" + "a" * 64, "held-out"),
        ("Prompt_Toolkit==3.0 prompt_toolkit-3.0-py3-none-any.whl sha256:" + "a" * 64, "held-out"),
        ("demo==1.0 demo-1.0.tar.gz sha256:" + "a" * 64, "not a wheel"),
        ("demo==1.0 other-1.0-py3-none-any.whl sha256:" + "a" * 64, "not a wheel of demo"),
        ("demo==1.0 demo-1.0-py3-none-any.whl sha256:abc", "sha256"),
        ("demo>=1.0 demo-1.0-py3-none-any.whl sha256:" + "a" * 64, "NAME==VERSION"),
        (GOOD + " keep:*.py", "unknown option"),
        ("demo==1.0", "expected"),
        (GOOD + "\n" + GOOD, "listed twice"),
    ],
)
def test_a_bad_list_line_is_an_error_naming_the_line(line, message):
    with pytest.raises(DataError, match=message) as err:
        parse_list("# header\n" + line + "\n", "mine.txt")
    assert f"mine.txt:{2 + line.count(chr(10))}:" in str(err.value)  # the (last) bad line


def test_a_list_line_parses_with_excludes_and_comments():
    (wheel,) = parse_list(GOOD + " exclude:demo/gen/* # trailing comment\n", "x")
    assert (wheel.name, wheel.version, wheel.excludes) == ("demo", "1.0", ("demo/gen/*",))


def test_an_unknown_bundled_list_is_an_error_that_lists_the_bundled_ones():
    with pytest.raises(DataError, match="no bundled list.*python"):
        list_path("nosuchlist")
    with pytest.raises(DataError, match="does not exist"):
        list_path("/nowhere/list.txt")


def test_pip_is_asked_for_exactly_the_wheels_tags():
    assert pip_tag_args("a-1-py3-none-any.whl") == [
        "--implementation", "py", "--python-version", "3.11", "--abi", "none",
        "--platform", "any",
    ]  # fmt: skip
    args = pip_tag_args("numpy-2.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert args[:4] == ["--implementation", "cp", "--python-version", "3.11"]
    assert args.count("--platform") == 2


# --- reading wheels -------------------------------------------------------------------------


def test_a_wheel_gives_its_own_py_files_without_vendored_generated_or_excluded_ones(tmp_path):
    wheel = make_wheel(
        tmp_path,
        "demo",
        "1.0",
        {
            "demo/__init__.py": "",
            "demo/core.py": MODULE,
            "demo/_vendor/six.py": MODULE + "# six\n",
            "demo/proto_pb2.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\nx = 1\n",
            "demo/big.py": "x = 1\n" * (MAX_FILE_BYTES // 6 + 1),
            "demo/skip/me.py": "y = 2\n",
            "demo/notes.txt": "not python",
            "demo/indented.py": "def f():\n    # auto-generated names are fine here\n    pass\n",
        },
    )
    got = wheel_py_files(wheel, excludes=("demo/skip/*",))
    assert [m for m, _ in got.files] == ["demo/__init__.py", "demo/core.py", "demo/indented.py"]
    assert got.left_out == {"vendored": 1, "generated": 1, "too large": 1, "excluded": 1}


def test_a_corrupt_wheel_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "demo-1.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="demo-1.0-py3-none-any.whl cannot be read"):
        wheel_py_files(bad)


# --- the source in collect_corpus: cache, dedup, pip -----------------------------------------


def put_in_cache(cache: Path, wheel: Path) -> None:
    (cache / CACHE_SUBDIR).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel, cache / CACHE_SUBDIR / wheel.name)


def test_cached_wheels_are_read_deduplicated_and_named_by_project(tmp_path, index):
    """No pip call can succeed here (the index is empty), so the cache alone must serve."""
    a = make_wheel(tmp_path / "w", "alpha", "1.0", {"alpha/core.py": MODULE, "alpha/x.py": "x=1\n"})
    b = make_wheel(
        tmp_path / "w", "Beta.Pkg", "2.0", {"beta/copy.py": MODULE, "beta/y.py": "y=2\n"}
    )
    lst = tmp_path / "list.txt"
    lst.write_text(list_line(a, "alpha", "1.0") + list_line(b, "beta-pkg", "2.0"))
    cache = tmp_path / "cache"
    put_in_cache(cache, a)
    put_in_cache(cache, b)
    local = tmp_path / "local"
    local.mkdir()
    (local / "greet.py").write_text(MODULE)  # the same text as two wheel files
    corpus = collect_corpus([str(local), f"pypi:{lst}"], cache_dir=cache)
    assert [f.path for f in corpus.files] == [
        "greet.py", "pypi/alpha/alpha/x.py", "pypi/beta-pkg/beta/y.py",
    ]  # fmt: skip
    assert corpus.duplicates == 2


def test_pip_fetches_missing_wheels_once_then_the_cache_serves_them(tmp_path, index):
    wheel = make_wheel(index, "alpha", "1.0", {"alpha/core.py": MODULE})
    lst = tmp_path / "list.txt"
    lst.write_text(list_line(wheel, "alpha", "1.0"))
    cache = tmp_path / "cache"
    first = collect_corpus([f"pypi:{lst}"], cache_dir=cache)
    cached = cache / CACHE_SUBDIR / wheel.name
    assert cached.read_bytes() == wheel.read_bytes()
    assert not list((cache / CACHE_SUBDIR).glob(".download*"))  # no temporary dir left
    wheel.unlink()  # the index is now empty: only the cache can serve the second run
    second = collect_corpus([f"pypi:{lst}"], cache_dir=cache)
    assert first.files == second.files == (SourceFile("pypi/alpha/alpha/core.py", MODULE),)


def test_a_wheel_that_cannot_be_downloaded_is_an_error_naming_it(tmp_path, index):
    lst = tmp_path / "list.txt"
    lst.write_text("ghost==1.0 ghost-1.0-py3-none-any.whl sha256:" + "b" * 64 + "\n")
    with pytest.raises(DataError, match=r"could not download ghost==1\.0") as err:
        collect_corpus([f"pypi:{lst}"], cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_a_downloaded_wheel_with_another_hash_is_an_error(tmp_path, index):
    wheel = make_wheel(index, "alpha", "1.0", {"alpha/core.py": MODULE})
    lst = tmp_path / "list.txt"
    lst.write_text(list_line(wheel, "alpha", "1.0", digest="c" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"alpha==1\.0"):
        collect_corpus([f"pypi:{lst}"], cache_dir=cache)
    assert not (cache / CACHE_SUBDIR / wheel.name).exists()


def test_a_damaged_cached_wheel_is_fetched_again(tmp_path, index):
    wheel = make_wheel(index, "alpha", "1.0", {"alpha/core.py": MODULE})
    lst = tmp_path / "list.txt"
    lst.write_text(list_line(wheel, "alpha", "1.0"))
    cache = tmp_path / "cache"
    (cache / CACHE_SUBDIR).mkdir(parents=True)
    (cache / CACHE_SUBDIR / wheel.name).write_bytes(b"truncated")
    corpus = collect_corpus([f"pypi:{lst}"], cache_dir=cache)
    assert [f.path for f in corpus.files] == ["pypi/alpha/alpha/core.py"]
    assert (cache / CACHE_SUBDIR / wheel.name).read_bytes() == wheel.read_bytes()


def test_prepare_data_keeps_its_wheels_in_the_data_cache(tmp_path, index, py_tree):
    wheel = make_wheel(index, "alpha", "1.0", {"alpha/core.py": MODULE, "alpha/io.py": "z=3\n"})
    lst = tmp_path / "list.txt"
    lst.write_text(list_line(wheel, "alpha", "1.0"))
    cfg = DataConfig(sources=(str(py_tree), f"pypi:{lst}"), cache_dir=str(tmp_path / "data"))
    prepared = prepare_data(cfg, vocab_size=300)
    assert (tmp_path / "data" / CACHE_SUBDIR / wheel.name).is_file()
    assert "pypi/alpha/alpha/core.py" in (prepared.root / "files.json").read_text()
    assert open_prepared(prepared.root).stats["files"]["train"] > 0
