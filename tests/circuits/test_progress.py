"""The mask-training progress bar, as a log file sees it."""

from __future__ import annotations

from sparsecircuits.circuits.pruner import progress_bar


def test_progress_goes_to_stderr_and_ends_with_a_newline(capsys):
    with progress_bar(3, "prune quotes", enabled=True) as bar:
        for _ in range(3):
            bar.update(1)
    print("circuit written")
    out, err = capsys.readouterr()
    assert out == "circuit written\n"  # stdout holds only the results
    assert err.endswith("\n")  # the next line of a shared log starts on its own line
    assert "3/3" in err.rsplit("\r", 1)[-1]  # the last redraw shows the finished bar


def test_a_disabled_bar_writes_nothing(capsys):
    with progress_bar(3, "prune quotes", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")
