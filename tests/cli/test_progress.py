"""Progress bars: shown on a terminal, silent otherwise; promote reports every step."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dbosify.cli._common import Progress
from dbosify.promote import promote_notebook
from tests.promote.test_promote import CELL, notebook


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    with Progress("promoting x") as bar:
        bar.step(1, 2)
        bar.step(2, 2)
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with Progress("promoting x") as bar:
        bar.step(1, 4)
        bar.step(4, 4)
    assert "promoting x" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_promote_reports_each_step(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "steps.ipynb", CELL, CELL.replace("Shout", "Whisper")
                  .replace("def shout", "def whisper").replace("shout,", "whisper,"))
    seen: list[tuple[int, int]] = []
    promote_notebook(nb, progress=lambda done, total: seen.append((done, total)))
    # Reading, two cells, the module checked, the files written.
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
