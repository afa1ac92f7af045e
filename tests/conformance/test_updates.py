"""Workflow updates: validators, handles and wait stages, update ids, update-with-start."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify import workflow
from dbosify.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from dbosify.common import WorkflowIDConflictPolicy
from dbosify.worker import Worker


@workflow.defn
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.done = False
        self.release_slow = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.items

    @workflow.update
    async def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @add.validator
    def check(self, item: str) -> None:
        if not item:
            raise ValueError("an item needs a name")

    @workflow.update
    async def slow_add(self, item: str) -> int:
        await workflow.wait_condition(lambda: self.release_slow)
        self.items.append(item)
        return len(self.items)

    @workflow.signal
    def release(self) -> None:
        self.release_slow = True

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.items)


async def _updates_in_history(handle: object) -> list[int]:
    history = await handle.fetch_history()  # type: ignore[attr-defined]
    kinds = (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
             EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    return [e.event_type for e in history.events if e.event_type in kinds]


async def test_update_validator_and_result(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Cart]):
        handle = await client.start_workflow(Cart.run, id=f"cart-{uuid.uuid4()}",
                                             task_queue="u")
        assert await handle.execute_update(Cart.add, "apple") == 1
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(Cart.add, "")
        assert "an item needs a name" in str(info.value.cause)
        assert await handle.query(Cart.count) == 1  # The rejected update changed nothing.
        await handle.signal(Cart.finish)
        assert await handle.result() == ["apple"]
        # Only the accepted update is history: accepted and completed, once.
        accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        assert (await _updates_in_history(handle)).count(accepted) == 1


async def test_same_update_id_twice_returns_the_same_outcome(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Cart]):
        handle = await client.start_workflow(Cart.run, id=f"cart-{uuid.uuid4()}",
                                             task_queue="u")
        first = await handle.execute_update(Cart.add, "pear", id="once")
        again = await handle.execute_update(Cart.add, "pear", id="once")
        assert first == again == 1
        assert await handle.query(Cart.count) == 1
        await handle.signal(Cart.finish)
        assert await handle.result() == ["pear"]


async def test_start_update_stages(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Cart]):
        handle = await client.start_workflow(Cart.run, id=f"cart-{uuid.uuid4()}",
                                             task_queue="u")
        update = await handle.start_update(Cart.slow_add, "plum",
                                           wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        # Accepted, not completed: its handler waits for a signal.
        waiting = asyncio.ensure_future(update.result())
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await handle.signal(Cart.release)
        assert await asyncio.wait_for(waiting, 10) == 1
        # A handle for the same update id, fetched later, gives the same result.
        assert await handle.get_update_handle(update.id).result() == 1
        await handle.signal(Cart.finish)
        assert await handle.result() == ["plum"]


async def test_update_with_start(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Cart]):
        workflow_id = f"cart-{uuid.uuid4()}"

        def operation() -> WithStartWorkflowOperation[Cart, list[str]]:
            return WithStartWorkflowOperation(
                Cart.run, id=workflow_id, task_queue="u",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)

        first = operation()
        assert await client.execute_update_with_start_workflow(
            Cart.add, "fig", start_workflow_operation=first) == 1
        second = operation()  # The workflow runs now: the update goes to it, no new run.
        assert await client.execute_update_with_start_workflow(
            Cart.add, "kiwi", start_workflow_operation=second) == 2
        handle = await first.workflow_handle()
        assert (await second.workflow_handle()).result_run_id == handle.result_run_id
        await handle.signal(Cart.finish)
        assert await handle.result() == ["fig", "kiwi"]


async def test_update_to_a_closed_workflow_is_refused(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Cart]):
        handle = await client.start_workflow(Cart.run, id=f"cart-{uuid.uuid4()}",
                                             task_queue="u")
        await handle.signal(Cart.finish)
        await handle.result()
        with pytest.raises(Exception, match="already completed"):
            await handle.execute_update(Cart.add, "late", rpc_timeout=timedelta(seconds=5))


@workflow.defn
class Reasonable:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            return f"cancelled: {workflow.cancellation_reason()}"
        return "unreachable"


async def test_cancellation_reason_reaches_the_workflow(client: Client) -> None:
    async with Worker(client, task_queue="u", workflows=[Reasonable]):
        handle = await client.start_workflow(Reasonable.run, id=f"r-{uuid.uuid4()}",
                                             task_queue="u")
        await handle.cancel(reason="budget exhausted")
        assert await handle.result() == "cancelled: budget exhausted"


@workflow.defn
class Hasty:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.go)
        return "done"  # Returns while an update handler is still running.

    @workflow.update
    async def linger(self) -> None:
        self.go = True
        await workflow.wait_condition(lambda: False)


async def test_unfinished_update_handlers_are_warned_about(client: Client) -> None:
    with pytest.warns(workflow.UnfinishedUpdateHandlersWarning, match="linger"):
        async with Worker(client, task_queue="u", workflows=[Hasty]):
            handle = await client.start_workflow(Hasty.run, id=f"h-{uuid.uuid4()}",
                                                 task_queue="u")
            await handle.start_update(Hasty.linger, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
            assert await handle.result() == "done"
