"""Two message bugs found by running Temporal programs as a new user would (issue 9 §6).

- Signals sent while no worker serves the run's task queue, then a worker starts, then a query
  at once: the query sees every signal sent before it.
- An update whose handler lets the workflow finish in the same workflow task: the caller gets
  the handler's result (or its failure), as from Temporal; also through update-with-start.

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dbosify import workflow
from dbosify.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from dbosify.common import WorkflowIDConflictPolicy
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

Q = "message-timing-q"


@workflow.defn
class Counter:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return self.seen

    @workflow.signal
    def add(self, item: str) -> None:
        self.seen.append(item)

    @workflow.signal
    def stop(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.seen)


@workflow.defn
class Finisher:
    """Waits until an update lets it finish; the update's handler sets the flag."""

    def __init__(self) -> None:
        self.done = False
        self.value = ""

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return f"run saw {self.value}"

    @workflow.update
    def finish(self, value: str) -> str:
        self.value = value
        self.done = True
        return f"finished with {value}"

    @workflow.update
    def finish_badly(self, value: str) -> str:
        self.value = value
        self.done = True
        raise ApplicationError(f"refused {value}", non_retryable=True)

    @workflow.update
    async def finish_later(self, value: str) -> str:
        # Finishes the run from an async handler after a timer, in its own later task.
        await workflow.sleep(0.05)
        self.value = value
        self.done = True
        return f"finished later with {value}"


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[Counter, Finisher])


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_signals_before_any_worker_are_seen_by_the_first_query(client: Client) -> None:
    handle = await client.start_workflow(Counter.run, id=_id("early-signals"), task_queue=Q)
    await handle.signal(Counter.add, "a")
    await handle.signal(Counter.add, "b")
    async with _worker(client):
        assert await handle.query(Counter.count) == 2
        await handle.signal(Counter.add, "c")
        assert await handle.query(Counter.count) == 3
        await handle.signal(Counter.stop)
        assert await handle.result() == ["a", "b", "c"]


async def test_signals_to_a_released_run_are_seen_by_the_next_query(client: Client) -> None:
    """The same after a worker shut down: the run waits unowned, signals arrive, a new worker
    takes it, the query at once sees them."""
    async with _worker(client):
        handle = await client.start_workflow(Counter.run, id=_id("released"), task_queue=Q)
        await handle.signal(Counter.add, "a")
        assert await handle.query(Counter.count) == 1
    await handle.signal(Counter.add, "b")
    await handle.signal(Counter.add, "c")
    async with _worker(client):
        assert await handle.query(Counter.count) == 3
        await handle.signal(Counter.stop)
        assert await handle.result() == ["a", "b", "c"]


async def test_update_that_finishes_the_run_returns_its_result(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Finisher.run, id=_id("finish"), task_queue=Q)
        assert await handle.execute_update(Finisher.finish, "x") == "finished with x"
        assert await handle.result() == "run saw x"


async def test_update_started_then_run_finishes(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Finisher.run, id=_id("finish-h"), task_queue=Q)
        update = await handle.start_update(Finisher.finish, "y",
                                           wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        assert await update.result() == "finished with y"
        assert await handle.result() == "run saw y"
        # Asked again by id after the run closed: the recorded outcome.
        again = handle.get_update_handle(update.id)
        assert await again.result() == "finished with y"


async def test_failing_update_that_finishes_the_run(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Finisher.run, id=_id("finish-bad"), task_queue=Q)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(Finisher.finish_badly, "z")
        assert isinstance(err.value.cause, ApplicationError)
        assert "refused z" in str(err.value.cause)
        assert await handle.result() == "run saw z"


async def test_async_update_that_finishes_the_run_later(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Finisher.run, id=_id("finish-later"), task_queue=Q)
        assert await handle.execute_update(Finisher.finish_later, "w") == \
            "finished later with w"
        assert await handle.result() == "run saw w"


async def test_update_with_start_that_finishes_the_run(client: Client) -> None:
    async with _worker(client):
        start = WithStartWorkflowOperation(
            Finisher.run, id=_id("uws-finish"), task_queue=Q,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        result = await client.execute_update_with_start_workflow(
            Finisher.finish, "v", start_workflow_operation=start)
        assert result == "finished with v"
        handle = await start.workflow_handle()
        assert await asyncio.wait_for(handle.result(), 30) == "run saw v"


@workflow.defn
class Slow:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        return "slept"


async def test_result_outlasts_the_long_poll(client: Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """result() of a run that outlasts several capped long polls (found by a user's suite:
    a poll that timed out ended temporalio's wait with "No completion event found")."""
    from dbosify._service import _service

    monkeypatch.setattr(_service, "_LONG_POLL_S", 0.3)
    async with Worker(client, task_queue=Q, workflows=[Slow]):
        handle = await client.start_workflow(Slow.run, 1.5, id=_id("slow"), task_queue=Q)
        assert await handle.result() == "slept"
