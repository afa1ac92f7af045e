"""A run started while no versioned worker existed is pinned to the build id of the versioned
worker that claims it, as Temporal assigns a build id at a run's first workflow task (DESIGN §6);
an unversioned worker leaves it unversioned, and a run that already had workflow tasks on an
unversioned worker stays unversioned."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from dbosify import activity, workflow
from dbosify.client import Client, WorkflowHandle
from dbosify.worker import Worker

Q = "pin-at-claim-q"


@activity.defn
async def bump(x: int) -> int:
    return x + 1


@workflow.defn
class Waits:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self, x: int) -> int:
        y = await workflow.execute_activity(bump, x, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self.go)
        return y

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


async def _assigned_build_id(handle: WorkflowHandle[Waits, int]) -> str:
    described = await handle.describe()
    return str(described.raw_description.workflow_execution_info.assigned_build_id)


async def _start_without_a_worker(client: Client) -> WorkflowHandle[Waits, int]:
    # This process serves no task queue yet: the run is written for whichever worker claims it.
    handle = await client.start_workflow(Waits.run, 1, id=f"pin-{uuid.uuid4()}", task_queue=Q)
    assert await _assigned_build_id(handle) == ""
    return handle


async def test_a_versioned_worker_pins_the_unversioned_run_it_claims(client: Client) -> None:
    handle = await _start_without_a_worker(client)
    async with Worker(client, task_queue=Q, workflows=[Waits], activities=[bump],
                      build_id="v1"):
        await handle.signal(Waits.proceed)
        assert await asyncio.wait_for(handle.result(), 20) == 2
    assert await _assigned_build_id(handle) == "v1"
    history = await handle.fetch_history()
    stamps = [e.workflow_task_completed_event_attributes.worker_version.build_id
              for e in history.events if e.HasField("workflow_task_completed_event_attributes")]
    assert stamps and set(stamps) == {"v1"}


async def test_an_unversioned_worker_leaves_the_run_unversioned(client: Client) -> None:
    handle = await _start_without_a_worker(client)
    async with Worker(client, task_queue=Q, workflows=[Waits], activities=[bump]):
        await handle.signal(Waits.proceed)
        assert await asyncio.wait_for(handle.result(), 20) == 2
    assert await _assigned_build_id(handle) == ""


async def test_a_run_that_ran_unversioned_stays_unversioned(client: Client) -> None:
    handle = await _start_without_a_worker(client)
    async with Worker(client, task_queue=Q, workflows=[Waits], activities=[bump]):
        for _ in range(500):  # Until its first activity is done: it has had workflow tasks.
            history = await handle.fetch_history()
            if any(e.HasField("activity_task_completed_event_attributes")
                   for e in history.events):
                break
            await asyncio.sleep(0.02)
    # Given back at shutdown; a versioned worker takes it over, and it keeps no build id.
    async with Worker(client, task_queue=Q, workflows=[Waits], activities=[bump],
                      build_id="v2"):
        await handle.signal(Waits.proceed)
        assert await asyncio.wait_for(handle.result(), 20) == 2
    assert await _assigned_build_id(handle) == ""
