"""Programs written for the earlier dbosify run unchanged (issue 9 §2).

Its ``Worker`` takes a database URL, a DBOS config dict or nothing; its ``Client`` is an async
context manager with ``close()``; sync activities need no executor; and test suites on
pytest-asyncio's function-scoped loops (a new loop per test) work, even when a test leaves a
worker running on a loop that then closes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.service import RPCError

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify.client import Client
from dbosify.worker import Worker

PROGRAMS = Path(__file__).parent / "programs"
REPO_ROOT = Path(__file__).resolve().parents[2]
Q = "earlier-q"


@activity.defn
def shout(text: str) -> str:
    """A sync activity: runs in the worker's own thread pool."""
    return f"{text.upper()} from {threading.current_thread().name}"


@workflow.defn
class Shout:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.open = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.open)
        return "through"

    @workflow.signal
    def unlock(self) -> None:
        self.open = True


def _env(database: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TEMPORAL_") and k not in ("DBOSIFY_DATABASE_URL",
                                                          "DBOS_SYSTEM_DATABASE_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.mark.parametrize("form", ["url", "config", "none"])
async def test_worker_from_a_database(database: str, form: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker(url), Worker({"system_database_url": url}) and Worker(None) (the configured
    database) connect when they start; a sync activity runs without an activity_executor."""
    target: object = {"url": database, "config": {"name": "app", "system_database_url": database},
                      "none": None}[form]
    if form == "none":
        monkeypatch.setenv("DBOS_SYSTEM_DATABASE_URL", database)
    worker = Worker(target, task_queue=Q, workflows=[Shout], activities=[shout])  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="connects to its database when it starts"):
        _ = worker.client
    async with worker:
        assert worker.client.service_client.process.db.url.endswith(  # type: ignore[attr-defined]
            database.split("/")[-1])
        async with await Client.connect(database) as client:
            result = await client.execute_workflow(Shout.run, "hi", id=f"shout-{form}",
                                                   task_queue=Q)
    assert result.startswith("HI from dbosify-activity-")
    # The worker's own client and pool went with it; nothing holds the database any more.
    assert worker.is_shutdown
    assert current_process() is None


def test_worker_rejects_a_bad_target() -> None:
    with pytest.raises(TypeError, match="first argument must be a Client, a database URL"):
        Worker(42, task_queue=Q, workflows=[Shout])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="system_database_url must be a URL string"):
        Worker({"system_database_url": 5}, task_queue=Q, workflows=[Shout])


async def test_client_close_keeps_workers_running(database: str) -> None:
    """Closing a client refuses its later calls and never stops the process's workers; the
    database is released once the last client and worker are gone."""
    async with await Client.connect(database) as owner:
        async with Worker(owner, task_queue=Q, workflows=[Shout, Gate], activities=[shout]):
            async with await Client.connect(database) as first:
                handle = await first.start_workflow(Gate.run, id="gate", task_queue=Q)
            with pytest.raises(RPCError, match="client was closed"):
                await first.get_workflow_handle("gate").describe()
            # The worker still runs: another client's signal completes the run.
            second = await Client.connect(database)
            await second.get_workflow_handle("gate").signal(Gate.unlock)
            assert await second.get_workflow_handle(handle.id).result() == "through"
            await second.close()
            await second.close()  # Twice is harmless.
            assert current_process() is not None
        assert current_process() is not None  # `owner` is still open.
    assert current_process() is None


@pytest.mark.slow
@pytest.mark.parametrize("config", ["0", "1"])
def test_earlier_readme_example(database: str, tmp_path: Path, config: str) -> None:
    """The earlier dbosify's README example, run exactly as written."""
    proc = subprocess.run(
        [sys.executable, str(PROGRAMS / "earlier_readme.py")], capture_output=True, text=True,
        cwd=tmp_path, env=_env(database, DBOS_SYSTEM_DATABASE_URL=database,
                               EARLIER_CONFIG=config),
        timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Result: Hello, DBOS!" in proc.stdout


@pytest.mark.slow
def test_function_scoped_event_loops(database: str, tmp_path: Path) -> None:
    """A pytest-asyncio suite with a new loop per test: workers in successive tests work, and
    a worker left running on a loop that closed (or killed by a timeout) poisons nothing; the
    run it drove continues on the next test's worker; one client serves every test's loop."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_user_suite.py").write_text((PROGRAMS / "function_loops.py").read_text())
    (suite / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "timeout_method = signal\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user_suite.py"],
        capture_output=True, text=True, cwd=suite, env=_env(database,
                                                             DBOSIFY_DATABASE_URL=database),
        timeout=240, check=False)
    out = proc.stdout
    assert "6 passed" in out and "1 failed" in out, out[-6000:] + proc.stderr[-3000:]
    assert "FAILED test_user_suite.py::test_4_times_out" in out, out[-4000:]
    assert "one event loop" not in out


@pytest.mark.parametrize("cancel_tasks", [True, False])
def test_loop_closed_between_runs(database: str, cancel_tasks: bool) -> None:
    """In process: two event loops one after the other, the first closed with its worker still
    running (its tasks cancelled, as asyncio.run and pytest-asyncio do, or not even that)."""
    async def first() -> None:
        client = await Client.connect(database)
        worker = Worker(client, task_queue=Q, workflows=[Gate, Shout], activities=[shout])
        await worker.__aenter__()
        await client.start_workflow(Gate.run, id="left-gate", task_queue=Q)
        await asyncio.sleep(0.2)

    async def second() -> str:
        client = await Client.connect(database)
        async with Worker(client, task_queue=Q, workflows=[Gate, Shout], activities=[shout]):
            await client.get_workflow_handle("left-gate").signal(Gate.unlock)
            return await asyncio.wait_for(
                client.get_workflow_handle("left-gate").result(), 30)  # type: ignore[no-any-return]

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        if cancel_tasks:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        loop.close()
    assert asyncio.run(second()) == "through"
