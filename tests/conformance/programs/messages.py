"""Signals before any worker, then a query; an update that lets the workflow finish (Temporal's
hello-update sample's pattern). A temporalio program; the test swaps only its imports.
"""

import asyncio
import uuid

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker


@workflow.defn
class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.is_complete = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.is_complete)
        return self.count

    @workflow.signal
    def increment(self) -> None:
        self.count += 1

    @workflow.query
    def current(self) -> int:
        return self.count

    @workflow.update
    async def update_workflow_status(self) -> str:
        self.is_complete = True
        return "Workflow status updated"


async def main() -> None:
    client = await Client.connect("localhost:7233")
    handle = await client.start_workflow(
        Counter.run, id=f"counter-{uuid.uuid4()}", task_queue="messages-task-queue"
    )
    await handle.signal(Counter.increment)
    await handle.signal(Counter.increment)
    async with Worker(client, task_queue="messages-task-queue", workflows=[Counter]):
        print(f"Query: {await handle.query(Counter.current)}")
        print(f"Update: {await handle.execute_update(Counter.update_workflow_status)}")
        print(f"Result: {await handle.result()}")


if __name__ == "__main__":
    asyncio.run(main())
