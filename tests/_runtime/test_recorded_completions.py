"""Every completion is recorded before its commands act (issue 10), including one that could not
be recorded with its task: a first task that failed and was retried is recorded by a step of its
own (``TaskCompleted``), and a run recovered afterwards replays it against that record."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify.client import Client
from dbosify.worker import Worker

Q = "recorded-completions"
broken = {"first_task": True}
ran: list[str] = []


@activity.defn
async def note(word: str) -> str:
    ran.append(word)
    return word


@workflow.defn
class FailsFirst:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        if broken["first_task"]:
            raise RuntimeError("bug in the first task")  # A task failure: retried.
        first = await workflow.execute_activity(note, "first",
                                                start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: self.go)
        return first

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def state(self) -> str:
        return f"go={self.go}"


async def _until(check: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def test_retried_first_task_is_recorded_then_replayed(
        client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dbosify")
    broken["first_task"] = True
    ran.clear()
    workflow_id = f"fails-first-{uuid.uuid4()}"
    async with Worker(client, task_queue=Q, workflows=[FailsFirst], activities=[note]):
        handle = await client.start_workflow(FailsFirst.run, id=workflow_id, task_queue=Q)
        await _until(lambda: any("bug in the first task" in r.getMessage()
                                 for r in caplog.records))
        broken["first_task"] = False
        await _until(lambda: ran == ["first"])
    # A new worker takes the run over and replays it from its records.
    async with Worker(client, task_queue=Q, workflows=[FailsFirst], activities=[note]):
        assert await handle.query(FailsFirst.state) == "go=False"
        await handle.signal(FailsFirst.proceed)
        assert await asyncio.wait_for(handle.result(), 30) == "first"
        assert await handle.query(FailsFirst.state) == "go=True"
    assert ran == ["first"]  # Recorded as scheduled, resolved once: never run again.
    process = current_process()
    assert process is not None
    steps = await asyncio.to_thread(process.dbos_client().list_workflow_steps,
                                    handle.result_run_id or "")
    kinds = [record["kind"] for step in steps if step["output"]
             for record in step["output"].get("records", [])]
    assert kinds[0] == "completion"  # Task 0's completion, by a step of its own.
    history = await handle.fetch_history()
    types = [e.event_type for e in history.events]
    assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1
    assert types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED) == 1
