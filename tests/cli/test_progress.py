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


async def test_waiting_for_a_result_shows_the_runs_activities_on_a_terminal(
        database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import sqlalchemy as sa

    from dbosify._store._database import create_engine, resolve_database_url
    from dbosify._store._tables import runs
    from dbosify.cli._read import activity_counts, result
    from dbosify.client import Client
    from dbosify.worker import Worker
    from tests.cli import app

    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    client = await Client.connect(database)
    try:
        async with Worker(client, task_queue="progress-q", workflows=[app.SlowMark, app.Greet],
                          activities=[app.slow_mark, app.greet]):
            await client.start_workflow("SlowMark", str(tmp_path / "marks"), id="slow-p",
                                        task_queue="progress-q")
            ok, value = await asyncio.to_thread(result, database, "slow-p", "", 60)
            await client.execute_workflow("Greet", "Bo", id="greet-p", task_queue="progress-q")
    finally:
        await client.close()  # type: ignore[attr-defined]
    assert (ok, value) == (True, "marked")
    shown = terminal.getvalue()
    assert "waiting for 'slow-p' (Ctrl-C stops waiting, not the run)" in shown
    assert "waiting for slow-p" in shown and "0%" in shown  # the activity still running
    engine = create_engine(resolve_database_url(database))
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.workflow_id == "greet-p")).one()
            assert activity_counts(conn, row) == (1, 1)
    finally:
        engine.dispose()
