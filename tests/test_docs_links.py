"""The repository carries the docs its code cites: every `docs/X.md` named in the package
exists, and no docstring points at a file a user does not have."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "sparsecircuits"
CITED = re.compile(r"docs/[\w./-]+\.md")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_cited_doc_exists() -> None:
    cited = {m for f in _sources() for m in CITED.findall(f.read_text(encoding="utf-8"))}
    assert cited, "the package cites its docs"
    assert sorted(c for c in cited if not (REPO / c).is_file()) == []


def test_no_citation_of_files_outside_the_repository() -> None:
    offenders = [
        f.relative_to(REPO)
        for f in _sources()
        if re.search(r"PAPER_NOTES|DESIGN\.md", f.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_readme_links_to_the_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in ("docs/method.md", "docs/usage.md", "docs/architecture.md"):
        assert f"]({page})" in readme
        assert (REPO / page).is_file()
