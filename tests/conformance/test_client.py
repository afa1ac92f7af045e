"""The client surface: connecting, starting, handles, describe, id policies and timeouts.

Each test runs on SQLite and on Postgres through the ``client``/``database`` fixtures.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from dbosify import workflow
from dbosify._store import _database
from dbosify._store._database import resolve_database_url
from dbosify.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from dbosify.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from dbosify.exceptions import (
    ApplicationError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from dbosify.worker import Worker

Q = "client-q"


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text.upper()


@workflow.defn
class Gate:
    """Runs until signalled ``open``; returns its argument."""

    def __init__(self) -> None:
        self.opened = False

    @workflow.run
    async def run(self, text: str) -> str:
        await workflow.wait_condition(lambda: self.opened)
        return text

    @workflow.signal
    def open(self) -> None:
        self.opened = True


@workflow.defn
class Fails:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("broken on purpose", non_retryable=True)


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> str:
        await asyncio.sleep(3600)
        return "woke"


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[Echo, Gate, Fails, Sleeper])


# Connecting -----------------------------------------------------------------------------------


async def test_connect_by_url_runs_a_workflow(database: str) -> None:
    client = await Client.connect(database)
    async with _worker(client):
        assert await client.execute_workflow(Echo.run, "hi", id="e", task_queue=Q) == "HI"


async def test_temporal_address_uses_the_configured_database(
        database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    seeded = await Client.connect(database)
    async with _worker(seeded):
        await seeded.execute_workflow(Echo.run, "seed", id="seeded", task_queue=Q)
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", database)
    monkeypatch.setattr(_database, "_noted", set())  # Forget notes of earlier tests.
    with caplog.at_level(logging.INFO, logger="dbosify"):
        client = await Client.connect("localhost:7233")
        await Client.connect("localhost:7233")  # Reconnecting does not repeat the note.
    # The same database: the run written through the URL client is visible here.
    assert await client.get_workflow_handle("seeded").result() == "SEED"
    notes = [r.getMessage() for r in caplog.records if "localhost:7233" in r.getMessage()]
    assert len(notes) == 1, notes
    assert "configured database" in notes[0]
    assert resolve_database_url(database).redacted in notes[0]


# Start, execute, handles ------------------------------------------------------------------------


async def test_start_and_handles(client: Client) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    async with _worker(client):
        handle = await client.start_workflow(Echo.run, "abc", id="h-1", task_queue=Q)
        assert handle.id == "h-1"
        # As temporalio: a started handle is not pinned to a run (run_id None), but knows it.
        assert handle.run_id is None
        run_id = handle.result_run_id
        assert run_id and handle.first_execution_run_id == run_id
        assert await handle.result() == "ABC"

        by_id = client.get_workflow_handle("h-1")
        assert await by_id.result() == "ABC"
        by_run = client.get_workflow_handle("h-1", run_id=run_id)
        assert (await by_run.describe()).run_id == run_id
        typed: WorkflowHandle[Echo, str] = client.get_workflow_handle_for(Echo.run, "h-1")
        result: str = await typed.result()
        assert result == "ABC"

        desc = await handle.describe()
    assert desc.id == "h-1" and desc.run_id == run_id
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    assert desc.workflow_type == "Echo"
    assert desc.task_queue == Q
    assert desc.start_time >= before
    assert desc.close_time is not None and desc.close_time >= desc.start_time
    assert desc.execution_time is not None and desc.execution_time >= before
    assert desc.history_length >= 5  # started, task scheduled/started/completed, completed
    assert desc.raw_description.workflow_execution_info.first_run_id == run_id
    events = [e async for e in handle.fetch_history_events()]
    assert len(events) == desc.history_length


async def test_describe_running_and_unknown_id(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Gate.run, "x", id="running", task_queue=Q)
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        assert desc.close_time is None
        await handle.signal(Gate.open)
        assert await handle.result() == "x"
    with pytest.raises(RPCError, match="not found"):
        await client.get_workflow_handle("no-such-id").describe()


# Id policies ------------------------------------------------------------------------------------


async def test_second_start_of_running_id_is_rejected(client: Client) -> None:
    first = await client.start_workflow(Gate.run, "one", id="dup", task_queue=Q)
    with pytest.raises(WorkflowAlreadyStartedError) as info:
        await client.start_workflow(Gate.run, "two", id="dup", task_queue=Q)
    assert info.value.run_id == first.result_run_id
    assert info.value.workflow_id == "dup"


async def test_conflict_use_existing_returns_the_running_run(client: Client) -> None:
    first = await client.start_workflow(Gate.run, "one", id="use", task_queue=Q)
    second = await client.start_workflow(
        Gate.run, "two", id="use", task_queue=Q,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    assert second.result_run_id == first.result_run_id
    async with _worker(client):
        await second.signal(Gate.open)
        assert await second.result() == "one"


async def test_conflict_terminate_existing(client: Client) -> None:
    async with _worker(client):
        first = await client.start_workflow(Gate.run, "one", id="term", task_queue=Q)
        second = await client.start_workflow(
            Gate.run, "two", id="term", task_queue=Q,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
        assert second.result_run_id != first.result_run_id
        with pytest.raises(WorkflowFailureError) as info:
            await client.get_workflow_handle("term", run_id=first.result_run_id).result()
        assert isinstance(info.value.cause, TerminatedError)
        assert (await client.get_workflow_handle(
            "term", run_id=first.result_run_id).describe()).status == WorkflowExecutionStatus.TERMINATED
        await second.signal(Gate.open)
        assert await second.result() == "two"


async def test_default_reuse_allows_a_new_run_after_completion(client: Client) -> None:
    async with _worker(client):
        first = await client.execute_workflow(Echo.run, "a", id="reuse", task_queue=Q)
        handle = await client.start_workflow(Echo.run, "b", id="reuse", task_queue=Q)
        assert await handle.result() == "B"
    assert first == "A"
    assert handle.first_execution_run_id == handle.result_run_id
    runs = [w async for w in client.list_workflows("WorkflowId = 'reuse'")]
    assert len(runs) == 2


async def test_reject_duplicate_after_completion(client: Client) -> None:
    async with _worker(client):
        first = await client.start_workflow(Echo.run, "a", id="rej", task_queue=Q)
        await first.result()
        with pytest.raises(WorkflowAlreadyStartedError) as info:
            await client.start_workflow(
                Echo.run, "b", id="rej", task_queue=Q,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    assert info.value.run_id == first.result_run_id


async def test_allow_duplicate_failed_only(client: Client) -> None:
    async with _worker(client):
        await client.execute_workflow(Echo.run, "ok", id="fo-ok", task_queue=Q)
        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow(
                Echo.run, "again", id="fo-ok", task_queue=Q,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)

        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(Fails.run, id="fo-bad", task_queue=Q)
        again = await client.start_workflow(
            Echo.run, "retry", id="fo-bad", task_queue=Q,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        assert await again.result() == "RETRY"


# Timeouts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["execution_timeout", "run_timeout"])
async def test_workflow_timeout(client: Client, which: str) -> None:
    limit = timedelta(milliseconds=700)
    async with _worker(client):
        if which == "execution_timeout":
            handle = await client.start_workflow(Sleeper.run, id="slow", task_queue=Q,
                                                 execution_timeout=limit)
        else:
            handle = await client.start_workflow(Sleeper.run, id="slow", task_queue=Q,
                                                 run_timeout=limit)
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, TimeoutError)
        desc = await handle.describe()
        events = [e async for e in handle.fetch_history_events()]
    assert desc.status == WorkflowExecutionStatus.TIMED_OUT
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT
    assert desc.history_length == len(events)
    assert desc.close_time is not None
    assert desc.close_time - desc.start_time < timedelta(seconds=10)
