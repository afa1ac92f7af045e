"""A run this process takes over starts at once, not at its DBOS queue's next poll (DESIGN §9.3,
bench N2), through the private DBOS calls of ``dbosify._runtime._dispatch``.

The takeover test stops DBOS's queue thread from ever serving the process's own queue, so the
run can only resume through dbosify's own dispatch: without it the run never finishes.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from datetime import timedelta
from typing import Any

import pytest
from dbos import DBOS

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify.client import Client
from dbosify.worker import Worker

Q = "dispatch-q"


def test_private_dbos_calls_dispatch_relies_on() -> None:
    # dbosify._runtime._dispatch calls what DBOS 3.4's queue thread calls; if DBOS renames or
    # reshapes them, this fails here rather than leaving taken-over runs to the slow poll.
    from dbos._core import execute_dequeued_workflow
    from dbos._dbos import _get_dbos_instance
    from dbos._sys_db import SystemDatabase

    assert list(inspect.signature(execute_dequeued_workflow).parameters) == [
        "dbos", "status", "owner_xid"]
    params = inspect.signature(SystemDatabase.start_queued_workflows).parameters
    assert list(params)[:6] == ["self", "queue", "executor_id", "app_version",
                                "queue_partition_key", "local_running_count"]
    assert params["owner_xid"].kind == inspect.Parameter.KEYWORD_ONLY
    for name in ("get_workflow_statuses", "get_workflow_status"):
        assert callable(getattr(SystemDatabase, name)), name
    assert callable(_get_dbos_instance)


@activity.defn
async def bump(x: int) -> int:
    return x + 1


@workflow.defn
class Parked:
    def __init__(self) -> None:
        self.go = False
        self.stage = "starting"

    @workflow.run
    async def run(self, x: int) -> int:
        y = await workflow.execute_activity(bump, x, start_to_close_timeout=timedelta(seconds=30))
        self.stage = "waiting"
        await workflow.wait_condition(lambda: self.go)
        return await workflow.execute_activity(bump, y,
                                               start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def where(self) -> str:
        return self.stage


async def test_a_taken_over_run_starts_without_the_dbos_queue_poll(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    listen: Any = DBOS.listen_queues
    # DBOS's queue thread serves only a queue nobody uses: never this process's own.
    monkeypatch.setattr(DBOS, "listen_queues",
                        classmethod(lambda cls, names: listen(["dbosify-test-nobody"])))
    wid = f"dispatch-{uuid.uuid4()}"
    async with Worker(client, task_queue=Q, workflows=[Parked], activities=[bump]):
        handle = await client.start_workflow(Parked.run, 1, id=wid, task_queue=Q)
        for _ in range(500):
            if await handle.query(Parked.where) == "waiting":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the run never reached its wait")
    # The first worker gave the run back, its DBOS workflow left PENDING: the next worker
    # claims it and resumes that DBOS workflow.
    async with Worker(client, task_queue=Q, workflows=[Parked], activities=[bump]):
        await handle.signal(Parked.proceed)
        assert await asyncio.wait_for(handle.result(), 20) == 3
        process = current_process()
        assert process is not None
        status = await DBOS.get_workflow_status_async(handle.result_run_id or "")
        assert status is not None
        # Resumed through the process's own queue, by this process.
        assert status.queue_name == process.queue_name
        assert status.executor_id == process.executor_id
