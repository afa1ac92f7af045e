"""Messages to a run: signals, queries, cancellation and termination, with Temporal's semantics.

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from dbosify import activity, workflow
from dbosify.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from dbosify.common import QueryRejectCondition, RawValue
from dbosify.exceptions import CancelledError, TerminatedError
from dbosify.worker import Worker

Q = "messages-q"


@workflow.defn
class Inbox:
    """Collects signals until ``finish``; answers queries about them."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dynamic: list[tuple[str, Any]] = []
        self.done = False

    @workflow.run
    async def run(self, prefix: str) -> list[str]:
        await workflow.wait_condition(lambda: self.done)
        return [prefix + item for item in self.items]

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.signal(name="finish-now")
    def finish(self) -> None:
        self.done = True

    @workflow.signal(dynamic=True)
    def other(self, name: str, args: Sequence[RawValue]) -> None:
        value = workflow.payload_converter().from_payload(args[0].payload) if args else None
        self.dynamic.append((name, value))

    @workflow.query
    def count(self) -> int:
        return len(self.items)

    @workflow.query(name="items-with")
    def items_with(self, suffix: str) -> list[str]:
        return [item + suffix for item in self.items]

    @workflow.query
    def dynamic_signals(self) -> list[tuple[str, Any]]:
        return self.dynamic

    @workflow.query(dynamic=True)
    def any_query(self, name: str, args: Sequence[RawValue]) -> str:
        return f"dynamic:{name}:{len(args)}"


@workflow.defn
class LateHandler:
    """Registers its signal handler only after a first wait: earlier signals are buffered."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.ready = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.ready)
        workflow.set_signal_handler("late", self.seen.append)
        await workflow.wait_condition(lambda: "end" in self.seen)
        return self.seen

    @workflow.signal
    def arm(self) -> None:
        self.ready = True


cleanups: list[str] = []
started: dict[str, asyncio.Event] = {}


@activity.defn
async def cleanup(what: str) -> str:
    cleanups.append(what)
    return f"cleaned {what}"


@activity.defn
async def wait_for_cancel(key: str) -> str:
    started[key].set()
    try:
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        cleanups.append(f"activity {key} cancelled")
        raise


@workflow.defn
class Cancellable:
    """Waits forever; on cancellation runs a cleanup activity, then re-raises or swallows."""

    @workflow.run
    async def run(self, swallow: bool) -> str:
        try:
            await workflow.wait_condition(lambda: False)
        except asyncio.CancelledError:
            done = await workflow.execute_activity(
                cleanup, "after cancel", start_to_close_timeout=timedelta(seconds=10))
            if swallow:
                return done
            raise
        return "unreachable"


@workflow.defn
class InActivity:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            wait_for_cancel, key, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=5))


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[Inbox, LateHandler, Cancellable, InActivity],
                  activities=[cleanup, wait_for_cancel])


@pytest.fixture(autouse=True)
def _reset() -> None:
    cleanups.clear()
    started.clear()


# Signals ----------------------------------------------------------------------------------------


async def test_named_and_dynamic_signals(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "> ", id="sig", task_queue=Q)
        await handle.signal(Inbox.add, "a")
        await handle.signal("add", "b")
        await handle.signal("color", "blue")
        await handle.signal("size", 3)
        assert await handle.query(Inbox.count) == 2
        # Converted back to the query's declared type, list[tuple[str, Any]].
        assert await handle.query(Inbox.dynamic_signals) == [("color", "blue"), ("size", 3)]
        await handle.signal(Inbox.finish)
        assert await handle.result() == ["> a", "> b"]


async def test_signals_before_the_handler_are_buffered_in_order(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(LateHandler.run, id="late", task_queue=Q)
        for item in ("one", "two", "three", "end"):
            await handle.signal("late", item)
        await handle.signal(LateHandler.arm)
        assert await handle.result() == ["one", "two", "three", "end"]


async def test_signal_with_start(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="sws", task_queue=Q,
                                             start_signal="add", start_signal_args=["first"])
        # A second signal-with-start signals the running run instead of starting one.
        again = await client.start_workflow(Inbox.run, "", id="sws", task_queue=Q,
                                            start_signal="add", start_signal_args=["second"])
        assert again.result_run_id == handle.result_run_id
        await handle.signal(Inbox.finish)
        assert await handle.result() == ["first", "second"]


async def test_signal_without_a_worker_is_delivered_later(client: Client) -> None:
    handle = await client.start_workflow(Inbox.run, "", id="offline", task_queue=Q)
    await handle.signal(Inbox.add, "queued")
    await handle.signal(Inbox.finish)
    async with _worker(client):
        assert await handle.result() == ["queued"]


# Queries ----------------------------------------------------------------------------------------


async def test_queries_on_running_and_closed_runs(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="q", task_queue=Q)
        await handle.signal(Inbox.add, "x")
        assert await handle.query(Inbox.count) == 1
        assert await handle.query(Inbox.items_with, "!") == ["x!"]
        assert await handle.query("items-with", "?") == ["x?"]
        assert await handle.query("whatever", args=[1, 2]) == "dynamic:whatever:2"
        # A query changes nothing: asking twice gives the same answer, and the run goes on.
        assert await handle.query(Inbox.count) == 1
        await handle.signal(Inbox.add, "y")
        await handle.signal(Inbox.finish)
        assert await handle.result() == ["x", "y"]
        # Closed: answered from the recorded run.
        assert await handle.query(Inbox.count) == 2
        assert await handle.query("items-with", "") == ["x", "y"]
        assert await handle.query("closed-dynamic") == "dynamic:closed-dynamic:0"


async def test_closed_run_can_be_queried_without_the_run_in_memory(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="q-closed", task_queue=Q)
        await handle.signal(Inbox.add, "kept")
        await handle.signal(Inbox.finish)
        await handle.result()
    async with _worker(client):  # A new worker: the run is replayed from its records.
        assert await handle.query(Inbox.items_with, ".") == ["kept."]


async def test_unknown_query_fails(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[LateHandler]):
        handle = await client.start_workflow(LateHandler.run, id="unknown-q", task_queue=Q)
        with pytest.raises(WorkflowQueryFailedError) as info:
            await handle.query("no_such_query")
        assert "no_such_query" in str(info.value)
        await handle.terminate()


async def test_query_reject_condition_not_open(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="rej", task_queue=Q)
        assert await handle.query(Inbox.count,
                                  reject_condition=QueryRejectCondition.NOT_OPEN) == 0
        await handle.signal(Inbox.finish)
        await handle.result()
        with pytest.raises(WorkflowQueryRejectedError) as info:
            await handle.query(Inbox.count, reject_condition=QueryRejectCondition.NOT_OPEN)
        assert info.value.status == WorkflowExecutionStatus.COMPLETED
        # NOT_COMPLETED_CLEANLY accepts a completed run.
        assert await handle.query(
            Inbox.count, reject_condition=QueryRejectCondition.NOT_COMPLETED_CLEANLY) == 0


async def test_stack_trace_query(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="stack", task_queue=Q)
        trace = await handle.query("__stack_trace")
        assert isinstance(trace, str)
        assert "wait_condition" in trace or "run" in trace
        await handle.signal(Inbox.finish)
        await handle.result()


# Cancellation -----------------------------------------------------------------------------------


async def test_cancel_runs_cleanup_then_fails_with_cancelled(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Cancellable.run, False, id="cancel", task_queue=Q)
        assert await handle.query("__stack_trace")  # The run is waiting.
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        desc = await handle.describe()
    assert isinstance(info.value.cause, CancelledError)
    assert cleanups == ["after cancel"]
    assert desc.status == WorkflowExecutionStatus.CANCELED


async def test_cancel_swallowed_returns(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Cancellable.run, True, id="swallow", task_queue=Q)
        assert await handle.query("__stack_trace")
        await handle.cancel()
        assert await handle.result() == "cleaned after cancel"
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_cancel_reaches_a_running_activity(client: Client) -> None:
    started["act"] = asyncio.Event()
    async with _worker(client):
        handle = await client.start_workflow(InActivity.run, "act", id="cancel-act", task_queue=Q)
        await asyncio.wait_for(started["act"].wait(), 10)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        desc = await handle.describe()
    assert cleanups == ["activity act cancelled"]
    # As on Temporal: the workflow did not catch the ActivityError(CancelledError) raised at its
    # await, so the run is cancelled (not failed) and result() reports the cancellation.
    assert isinstance(info.value.cause, CancelledError)
    assert desc.status == WorkflowExecutionStatus.CANCELED
    history = [e.event_type async for e in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in history


# Termination ------------------------------------------------------------------------------------


async def test_terminate(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Inbox.run, "", id="term", task_queue=Q)
        await handle.signal(Inbox.add, "x")
        assert await handle.query(Inbox.count) == 1
        # temporalio's signature: positional arguments are details, the reason is a keyword.
        await handle.terminate("detail-1", {"n": 2}, reason="enough")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        desc = await handle.describe()
        events = [e async for e in handle.fetch_history_events()]
    assert isinstance(info.value.cause, TerminatedError)
    assert desc.status == WorkflowExecutionStatus.TERMINATED
    assert desc.close_time is not None
    close = events[-1]
    assert close.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
    attrs = close.workflow_execution_terminated_event_attributes
    assert attrs.reason == "enough"
    details = await client.data_converter.decode(attrs.details.payloads)
    assert details == ["detail-1", {"n": 2}]
    # Nothing more happens: a signal to the closed run is refused.
    with pytest.raises(RPCError, match=r"already completed"):
        await handle.signal(Inbox.add, "late")
