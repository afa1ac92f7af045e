"""A run rides out database errors (issue 10): a transient one (a restart, a dropped connection)
is retried until it passes; any other that escapes a run's body leaves its DBOS workflow in ERROR,
and the worker resumes it from its records instead of leaving the run RUNNING forever."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify._store._database import is_transient
from dbosify.client import Client
from dbosify.worker import Worker

Q = "db-errors-q"
calls: list[str] = []


@activity.defn
async def note(word: str) -> str:
    calls.append(word)
    return word


@workflow.defn
class WaitsThenNotes:
    def __init__(self) -> None:
        self.word = ""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(note, "first",
                                                start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: bool(self.word))
        last = await workflow.execute_activity(note, self.word,
                                               start_to_close_timeout=timedelta(seconds=10))
        return f"{first}-{last}"

    @workflow.signal
    def proceed(self, word: str) -> None:
        self.word = word


def _admin_shutdown() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "SELECT ...", {}, psycopg.errors.AdminShutdown(
            "terminating connection due to administrator command"))


def test_transient_errors_are_told_apart() -> None:
    assert is_transient(_admin_shutdown())
    assert is_transient(sa.exc.OperationalError(
        "SELECT", {}, psycopg.errors.SerializationFailure("could not serialize access")))
    assert not is_transient(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(sa.exc.ProgrammingError(
        "SELECT", {}, psycopg.errors.UndefinedTable("no such table")))
    assert not is_transient(RuntimeError("a bug"))


def _fail_inbox_reads(times: int, error: Callable[[], Exception]) -> list[int]:
    """Make the next ``times`` inbox reads of this process fail with ``error()``."""
    process = current_process()
    assert process is not None
    store = process.store
    original = store.read_inbox
    failed: list[int] = []

    def read_inbox(*args: Any) -> Any:
        if len(failed) < times:
            failed.append(1)
            raise error()
        return original(*args)

    store.read_inbox = read_inbox  # type: ignore[method-assign]
    return failed


async def _signal_and_finish(client: Client, run_id: str) -> str:
    handle = client.get_workflow_handle(run_id)
    await handle.signal(WaitsThenNotes.proceed, "go")
    return await asyncio.wait_for(handle.result(), 30)  # type: ignore[no-any-return]


async def _parked(client: Client) -> str:
    workflow_id = f"db-errors-{uuid.uuid4()}"
    handle = await client.start_workflow(WaitsThenNotes.run, id=workflow_id, task_queue=Q)
    while calls != ["first"]:
        await asyncio.sleep(0.02)
    return handle.id


@pytest.fixture(autouse=True)
def _clean() -> None:
    calls.clear()


async def test_a_transient_error_is_retried_in_the_run(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[WaitsThenNotes], activities=[note]):
        workflow_id = await _parked(client)
        failed = _fail_inbox_reads(3, _admin_shutdown)
        assert await _signal_and_finish(client, workflow_id) == "first-go"
        assert len(failed) == 3
        assert calls == ["first", "go"]


async def test_a_run_whose_dbos_workflow_failed_is_resumed(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[WaitsThenNotes], activities=[note]):
        workflow_id = await _parked(client)
        failed = _fail_inbox_reads(1, lambda: RuntimeError("not a database error"))
        # The body raises, DBOS marks the workflow ERROR; the worker puts it back to work,
        # and the recovered run replays its records (the first activity does not run again).
        assert await _signal_and_finish(client, workflow_id) == "first-go"
        assert len(failed) == 1
        assert calls == ["first", "go"]
