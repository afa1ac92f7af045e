"""Temporal's hello-local-activity sample, with a flaky local activity retried in the worker and
an eager start (a temporalio program, written for these tests).

The test runs it with every ``temporalio`` replaced by ``dbosify`` and nothing else changed.
"""

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker


@activity.defn
async def compose_greeting(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@activity.defn
async def flaky_count() -> int:
    attempt = activity.info().attempt
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@workflow.defn
class LocalGreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        greeting = await workflow.execute_local_activity(
            compose_greeting, args=["Hello", name], start_to_close_timeout=timedelta(seconds=10))
        attempts = await workflow.execute_local_activity(
            flaky_count, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
        return f"{greeting} (after {attempts} attempts)"


async def main() -> None:
    client = await Client.connect("localhost:7233")
    async with Worker(client, task_queue="hello-local-activity-task-queue",
                      workflows=[LocalGreetingWorkflow],
                      activities=[compose_greeting, flaky_count]):
        handle = await client.start_workflow(
            LocalGreetingWorkflow.run, "World",
            id=f"hello-local-activity-workflow-id-{uuid.uuid4()}",
            task_queue="hello-local-activity-task-queue", request_eager_start=True)
        print(f"Result: {await handle.result()}")
        print(f"Eager: {getattr(handle, '__temporal_eagerly_started')}")
        history = await handle.fetch_history()
        markers = [e for e in history.events if e.marker_recorded_event_attributes.marker_name]
        print(f"Markers: {len(markers)}")


if __name__ == "__main__":
    asyncio.run(main())
