"""dbosify worker as a subprocess: picks up pending runs, logs a line per run, stops on SIGTERM
or Ctrl-C with exit code 0; bad modules are one line, exit 2."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify.client import Client
from tests.cli.conftest import Q, invoke

APP = Path(__file__).with_name("app.py")


def _identities(database: str) -> list[str]:
    from dbosify._store._database import create_engine, resolve_database_url

    engine = create_engine(resolve_database_url(database))
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(t.processes.c.identity))]
    finally:
        engine.dispose()


def _worker(database: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbosify.cli", "worker", str(APP), "--task-queue", Q,
         "--database", database, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _wait_for_line(proc: subprocess.Popen[str], lines: list[str], text: str,
                         timeout: float = 60) -> None:
    # stderr is read by a thread (see test): poll what it collected.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(text in line for line in lines):
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited {proc.returncode}: {''.join(lines)}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"no line with {text!r} in {''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_worker_picks_up_pending_runs_and_stops_cleanly(
        database: str, stop: signal.Signals) -> None:
    client = await Client.connect(database)
    pending = await client.start_workflow("Greet", "Pending", id="pending-1", task_queue=Q)
    proc = _worker(database, "--identity", "cli-test-worker")
    lines: list[str] = []
    reader = asyncio.create_task(asyncio.to_thread(
        lambda: [lines.append(line) for line in proc.stderr]))  # type: ignore[union-attr]
    try:
        await _wait_for_line(proc, lines, "serving task queue 'cli-q'")
        assert await pending.result() == "Hello, Pending!"
        await _wait_for_line(proc, lines, f"Greet pending-1 (run {pending.result_run_id}) "
                                          "completed in ")
        handle = await client.start_workflow("Fails", id="fails-1", task_queue=Q)
        await _wait_for_line(proc, lines, "Fails fails-1")
        assert any("Fails fails-1" in line and "failed: ApplicationError: no data for today"
                   in line for line in lines)
        assert (await handle.describe()).status is not None
        assert "cli-test-worker" in _identities(database)
        proc.send_signal(stop)
        assert await asyncio.to_thread(proc.wait, 30) == 0, "".join(lines)
        await reader
        assert "stopped" in lines[-1]
        # One line per run: each run is logged once.
        assert sum("pending-1" in line for line in lines) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await client.close()


@pytest.mark.slow
async def test_sigterm_drains_a_running_activity(database: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    client = await Client.connect(database)
    proc = _worker(database)
    lines: list[str] = []
    reader = asyncio.create_task(asyncio.to_thread(
        lambda: [lines.append(line) for line in proc.stderr]))  # type: ignore[union-attr]
    try:
        await _wait_for_line(proc, lines, "serving task queue")
        handle = await client.start_workflow("SlowMark", str(marks), id="slow-1", task_queue=Q)
        for _ in range(300):
            if marks.exists() and "started" in marks.read_text():
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # The activity gets the graceful-shutdown timeout: it finishes, then the worker exits 0.
        assert await asyncio.to_thread(proc.wait, 30) == 0, "".join(lines)
        await reader
        assert marks.read_text() == "started\ndone\n"
        # The drained attempt's result is recorded: the run finishes (on this worker in its
        # grace period, or on the next one) without running the activity again.
        second = _worker(database)
        second_lines: list[str] = []
        second_reader = asyncio.create_task(asyncio.to_thread(
            lambda: [second_lines.append(line) for line in second.stderr]))  # type: ignore[union-attr]
        try:
            assert await asyncio.wait_for(handle.result(), 60) == "marked"
            await _wait_for_line(second, second_lines, "serving task queue")
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 60) == 0, "".join(second_lines)
            await second_reader
        assert marks.read_text() == "started\ndone\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await client.close()


@pytest.mark.parametrize(("target", "line"), [
    ("no_such_module_here", "dbosify: error: no module or file 'no_such_module_here': give a "
     "module name (app.pipeline) or a path (pipelines/x/pipeline.py)"),
    ("missing.py", "dbosify: error: no such file: missing.py"),
    ("empty.py", "dbosify: error: empty.py defines no @workflow.defn class and no "
     "@activity.defn function: nothing to serve"),
])
def test_bad_modules_are_usage_errors(target: str, line: str, tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("X = 1\n")
    out = invoke("worker", target, "--database", f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert (out.exit_code, out.stderr) == (2, line + "\n")


def test_module_that_raises_is_one_line_exit_1(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    out = invoke("worker", "broken.py", "--database", f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert (out.exit_code, out.stderr) == (
        1, "dbosify: error: importing broken.py failed: RuntimeError: boom\n")


def test_promoted_module_on_another_queue_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "promoted.py").write_text("TASK_QUEUE = 'etl'\n")
    out = invoke("worker", "promoted.py", "--database", f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert out.exit_code == 2  # defines nothing to serve
    assert "promoted.py was promoted for task queue 'etl' but this worker serves 'dbosify'" \
        in caplog.text


def _pipeline_module(folder: Path) -> Path:
    """A user's pipeline module that names none of the activities its pipelines call: the
    template's own (IncrementalIngest's) and a FanOut's activity reached through a module."""
    (folder / "cli_etl_tasks.py").write_text(
        "from dbosify import activity\n\n\n"
        "@activity.defn\nasync def cli_etl_double(n: int) -> int:\n    return 2 * n\n")
    module = folder / "cli_etl.py"
    module.write_text(
        "from dbosify import pipelines\n\nimport cli_etl_tasks\n\n\n"
        "class CliEtlCopy(pipelines.IncrementalIngest):\n"
        "    source = pipelines.IterableSource([{'id': i} for i in range(7)])\n"
        f"    sink = pipelines.SqliteTable({str(folder / 'sink.sqlite')!r}, 'copied')\n"
        "    batch_size = 3\n\n\n"
        "class CliEtlDoubles(pipelines.FanOut):\n"
        "    activity = cli_etl_tasks.cli_etl_double\n")
    return module


def test_a_pipeline_module_gets_its_templates_activities(tmp_path: Path) -> None:
    from dbosify.cli._worker import definitions, load_module

    module = load_module(str(_pipeline_module(tmp_path)))
    workflows, activities = definitions(module)
    assert [w.__name__ for w in workflows] == ["CliEtlCopy", "CliEtlDoubles"]
    assert sorted(getattr(a, "__temporal_activity_definition").name for a in activities) == [
        "cli_etl_double", "dbosify.pipelines.ingest_batch", "dbosify.pipelines.start_ingest"]


@pytest.mark.slow
async def test_worker_serves_a_pipeline_module_with_no_activity_listed(
        database: str, tmp_path: Path) -> None:
    import sqlite3

    module = _pipeline_module(tmp_path)
    client = await Client.connect(database)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbosify.cli", "worker", str(module), "--task-queue", Q,
         "--database", database], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = asyncio.create_task(asyncio.to_thread(
        lambda: [lines.append(line) for line in proc.stderr]))  # type: ignore[union-attr]
    try:
        await _wait_for_line(proc, lines, "serving task queue")
        copied = await asyncio.wait_for(client.execute_workflow(
            "CliEtlCopy", id="etl-copy", task_queue=Q), 60)
        doubled = await asyncio.wait_for(client.execute_workflow(
            "CliEtlDoubles", [1, 2, 3], id="etl-doubles", task_queue=Q), 60)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, "".join(lines)
        await reader
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await client.close()
    assert copied["rows"] == 7 and doubled == [2, 4, 6]
    with sqlite3.connect(tmp_path / "sink.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM copied").fetchone() == (7,)
    assert not any("not registered" in line for line in lines), "".join(lines)
