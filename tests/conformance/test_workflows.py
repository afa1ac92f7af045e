"""Deterministic workflow execution (DESIGN §4, §9.1), on both backends.

The workflow API (activities, timers, conditions, now/random/uuid4, patching) behaves as on
Temporal; recorded values come back identically on replay; changed code is a nondeterminism
error that leaves the run waiting for fixed code; blocking code is a potential deadlock that
does not stall the worker; continue-as-new chains runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify import activity, workflow
from dbosify.client import (
    Client,
    RPCError,
    WorkflowContinuedAsNewError,
    WorkflowExecutionStatus,
)
from dbosify.worker import Worker

TIMEOUT = timedelta(seconds=10)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds: for state only observable by looking (logs, histories)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def event_types(client: Client, workflow_id: str, run_id: str | None = None) -> list[str]:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]


# Activities --------------------------------------------------------------------------------------

@activity.defn
async def echo(value: str) -> str:
    return f"echo:{value}"


@activity.defn
async def step_one(value: str) -> str:
    return f"one:{value}"


@activity.defn(name="step_one_renamed")
async def step_two(value: str) -> str:
    return f"two:{value}"


# 1. The workflow API ------------------------------------------------------------------------------

@workflow.defn
class Features:
    def __init__(self) -> None:
        self.approved = False

    @workflow.signal
    def approve(self) -> None:
        self.approved = True

    @workflow.run
    async def run(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["execute"] = await workflow.execute_activity(echo, "a", start_to_close_timeout=TIMEOUT)
        handle = workflow.start_activity(echo, "b", start_to_close_timeout=TIMEOUT)
        out["handle_type"] = type(handle).__name__
        out["start"] = await handle
        out["gather"] = list(await asyncio.gather(*(
            workflow.execute_activity(echo, f"g{i}", start_to_close_timeout=TIMEOUT)
            for i in range(3))))
        before = workflow.now()
        await workflow.sleep(0.2)
        await asyncio.sleep(0.2)
        out["slept_ms"] = (workflow.now() - before) / timedelta(milliseconds=1)
        await workflow.wait_condition(lambda: self.approved)
        try:
            await workflow.wait_condition(lambda: False, timeout=0.2)
            out["condition_timeout"] = "not raised"
        except asyncio.TimeoutError:
            out["condition_timeout"] = "TimeoutError"
        out["patched"] = workflow.patched("feature-1")
        info = workflow.info()
        out["info"] = [info.workflow_id, info.workflow_type, info.task_queue, info.run_id,
                       info.attempt]
        out["random"] = workflow.random().random()
        out["uuid"] = str(workflow.uuid4())
        workflow.logger.info("features done for %s", info.workflow_id)
        return out


async def test_workflow_api(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    async with Worker(client, task_queue="q", workflows=[Features], activities=[echo]):
        handle = await client.start_workflow(Features.run, id="features", task_queue="q")
        await handle.signal(Features.approve)
        out = await handle.result()
    assert out["execute"] == "echo:a"
    assert out["handle_type"] == "_ActivityHandle"
    assert out["start"] == "echo:b"
    assert out["gather"] == ["echo:g0", "echo:g1", "echo:g2"]
    assert out["slept_ms"] >= 400
    assert out["condition_timeout"] == "TimeoutError"
    assert out["patched"] is True
    assert out["info"] == ["features", "Features", "q", handle.result_run_id, 1]
    assert 0 <= out["random"] < 1
    assert uuid.UUID(out["uuid"]).version == 4
    assert any(r.name == "temporalio.workflow" and "features done for features" in r.getMessage()
               for r in caplog.records)
    events = await event_types(client, "features")
    assert events.count("ACTIVITY_TASK_SCHEDULED") == 5
    assert events.count("ACTIVITY_TASK_COMPLETED") == 5
    # workflow.sleep, asyncio.sleep and the condition's timeout are durable timers.
    assert events.count("TIMER_STARTED") == 3 and events.count("TIMER_FIRED") == 3
    assert "WORKFLOW_EXECUTION_SIGNALED" in events
    assert "MARKER_RECORDED" in events  # The patch marker.
    assert events[-1] == "WORKFLOW_EXECUTION_COMPLETED"


# 2. Determinism on replay -----------------------------------------------------------------------

def _observe() -> list[Any]:
    return [workflow.now().isoformat(), workflow.random().random(), str(workflow.uuid4()),
            workflow.patched("p")]


@workflow.defn
class Observer:
    def __init__(self) -> None:
        self.go = False
        self.seen: list[list[Any]] = []

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def observed(self) -> list[list[Any]]:
        return self.seen

    @workflow.run
    async def run(self) -> list[list[Any]]:
        self.seen.append(_observe())
        await workflow.execute_activity(echo, "x", start_to_close_timeout=TIMEOUT)
        self.seen.append(_observe())
        await workflow.wait_condition(lambda: self.go)
        self.seen.append(_observe())
        return self.seen


async def test_replay_gives_recorded_values(client: Client) -> None:
    worker = Worker(client, task_queue="q", workflows=[Observer], activities=[echo])
    async with worker:
        handle = await client.start_workflow(Observer.run, id="observer", task_queue="q")

        async def two_seen() -> bool:
            try:
                return len(await handle.query(Observer.observed)) == 2
            except RPCError:  # No live state yet: the first activation has not run.
                return False

        await eventually(two_seen)
        live = await handle.query(Observer.observed)
    # The worker is gone: the run was released. A new worker replays its records into a new
    # instance, which must see the same now/random/uuid4/patched values.
    async with Worker(client, task_queue="q", workflows=[Observer], activities=[echo]):
        await handle.signal(Observer.proceed)
        result = await handle.result()
        assert result[:2] == live
        assert len(result) == 3 and result[2][1:3] != result[0][1:3]
        # A query on the closed run replays the stored records once more.
        assert await handle.query(Observer.observed) == result


# 3. Nondeterminism ------------------------------------------------------------------------------

@workflow.defn(name="Drift")
class DriftV1:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step_one, "x", start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: self.go)
        return first


@workflow.defn(name="Drift")
class DriftV2:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step_two, "x", start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: self.go)
        return first


async def test_nondeterminism_is_detected_and_fixed_code_resumes(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dbosify")
    async with Worker(client, task_queue="q", workflows=[DriftV1], activities=[step_one]):
        handle = await client.start_workflow(DriftV1.run, id="drift", task_queue="q")

        async def activity_done() -> bool:
            return "ACTIVITY_TASK_COMPLETED" in await event_types(client, "drift")

        await eventually(activity_done)

    def nondeterminism_logged() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "dbosify" and "nondeterminism" in r.getMessage()]

    async with Worker(client, task_queue="q", workflows=[DriftV2],
                      activities=[step_one, step_two]):
        async def logged() -> bool:
            return bool(nondeterminism_logged())

        await eventually(logged)
        await handle.signal(DriftV2.proceed)
        described = await handle.describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        # Neither the new activity type nor the signal moved the run on.
        assert "step_one_renamed" not in str(await handle.fetch_history())
    message = nondeterminism_logged()[0]
    assert "'drift'" in message
    assert "at event 0" in message
    assert "schedule_activity(seq=1, type='step_one')" in message
    assert "schedule_activity(seq=1, type='step_one_renamed')" in message
    async with Worker(client, task_queue="q", workflows=[DriftV1], activities=[step_one]):
        assert await handle.result() == "one:x"


# 4. Deadlock ------------------------------------------------------------------------------------

@workflow.defn
class Blocker:
    @workflow.run
    async def run(self) -> str:
        time.sleep(3)  # Blocks the workflow thread: never do this in workflow code.
        return "unreachable in time"


@workflow.defn
class Quick:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(echo, name, start_to_close_timeout=TIMEOUT)


async def test_blocking_code_is_a_potential_deadlock(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dbosify")
    async with Worker(client, task_queue="q", workflows=[Blocker, Quick], activities=[echo]):
        blocked = await client.start_workflow(Blocker.run, id="blocker", task_queue="q")
        # The worker keeps serving other runs while the blocked one holds its thread.
        started = time.monotonic()
        assert await client.execute_workflow(Quick.run, "y", id="quick", task_queue="q") == \
            "echo:y"
        assert time.monotonic() - started < 2.0

        def deadlocks() -> list[str]:
            return [r.getMessage() for r in caplog.records
                    if r.name == "dbosify" and "Potential deadlock" in r.getMessage()]

        async def reported() -> bool:
            return bool(deadlocks())

        await eventually(reported)
        assert "'blocker'" in deadlocks()[0]
        described = await blocked.describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        # Still serving after the report.
        assert await client.execute_workflow(Quick.run, "z", id="quick-2", task_queue="q") == \
            "echo:z"


# 5. Continue-as-new -----------------------------------------------------------------------------

@workflow.defn
class Chain:
    @workflow.run
    async def run(self, runs: list[str]) -> list[str]:
        runs = [*runs, workflow.info().run_id]
        if len(runs) < 3:
            workflow.continue_as_new(runs)
        return runs


async def test_continue_as_new_chains_runs(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=[Chain]):
        handle = await client.start_workflow(Chain.run, [], id="chain", task_queue="q")
        runs = await handle.result()
    assert len(set(runs)) == 3
    assert runs[0] == handle.result_run_id == handle.first_execution_run_id
    first = client.get_workflow_handle("chain", run_id=runs[0])
    with pytest.raises(WorkflowContinuedAsNewError) as info:
        await first.result(follow_runs=False)
    assert info.value.new_execution_run_id == runs[1]
    assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    second = client.get_workflow_handle("chain", run_id=runs[1])
    assert (await second.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    last = await client.get_workflow_handle("chain").describe()
    assert last.run_id == runs[2]
    assert last.status == WorkflowExecutionStatus.COMPLETED
    assert (await event_types(client, "chain", runs[0]))[-1] == \
        "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"


@workflow.defn
class AlwaysBroken:
    @workflow.run
    async def run(self) -> str:
        raise RuntimeError("bug in workflow code")  # A task failure: retried, not a failure.


async def test_terminate_reaches_a_run_whose_task_keeps_failing(client: Client) -> None:
    from dbosify.client import WorkflowFailureError
    from dbosify.exceptions import TerminatedError

    async with Worker(client, task_queue="broken", workflows=[AlwaysBroken]):
        handle = await client.start_workflow(AlwaysBroken.run, id=f"broken-{uuid.uuid4()}",
                                             task_queue="broken")
        for _ in range(200):  # The failure is recorded with the run once the task has failed.
            described = await handle.describe()
            if described.raw_description.pending_workflow_task.state:
                break
            await asyncio.sleep(0.02)
        assert described.status is not None and described.status.name == "RUNNING"
        started = time.monotonic()
        await handle.terminate(reason="stuck")
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        assert isinstance(info.value.cause, TerminatedError)
        # Well before the task's next retry (1 s, then 2 s ...) would have noticed.
        assert time.monotonic() - started < 1.0
        described = await handle.describe()
        assert described.status is not None and described.status.name == "TERMINATED"
        # The run's driver itself stops (its DBOS workflow ends), not only its row.
        drivers = client.service_client.process.drivers  # type: ignore[attr-defined]
        for _ in range(100):
            if described.run_id not in drivers:
                break
            await asyncio.sleep(0.01)
        assert described.run_id not in drivers
