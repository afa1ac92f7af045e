"""Temporal's hello-async-activity-completion sample (a temporalio program).

The test runs it with every ``temporalio`` replaced by ``dbosify`` and nothing else changed.
"""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@dataclass
class ComposeGreetingInput:
    greeting: str
    name: str


class GreetingComposer:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn
    async def compose_greeting(self, input: ComposeGreetingInput) -> str:
        # Schedule a task to complete this asynchronously. This could be done in
        # a completely different process or system.
        print("Completing activity asynchronously")
        # Tasks stored by asyncio are weak references and therefore can get GC'd,
        # so we store the tasks ourselves.
        self.task = asyncio.create_task(
            self.complete_greeting(activity.info().task_token, input)
        )

        # Raise the complete-async error which will complete this function but
        # does not consider the activity complete from the workflow perspective
        activity.raise_complete_async()

    async def complete_greeting(
        self, task_token: bytes, input: ComposeGreetingInput
    ) -> None:
        # Let's wait three seconds, heartbeating each second. Note, heartbeating
        # during async activity completion is done via the client directly.
        handle = self.client.get_async_activity_handle(task_token=task_token)
        for _ in range(0, 3):
            print("Waiting one second...")
            await handle.heartbeat()
            await asyncio.sleep(1)

        # Complete using the handle
        await handle.complete(f"{input.greeting}, {input.name}!")


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        # Set a heartbeat timeout of 20s
        return await workflow.execute_activity(
            GreetingComposer.compose_greeting,
            ComposeGreetingInput("Hello", name),
            start_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=timedelta(seconds=20),
        )


async def main():
    client = await Client.connect("localhost:7233")
    composer = GreetingComposer(client)
    async with Worker(
        client,
        task_queue="hello-async-activity-completion-task-queue",
        workflows=[GreetingWorkflow],
        activities=[composer.compose_greeting],
    ):
        result = await client.execute_workflow(
            GreetingWorkflow.run,
            "World",
            id=f"hello-async-activity-completion-workflow-id-{uuid.uuid4()}",
            task_queue="hello-async-activity-completion-task-queue",
        )
        print(f"Result: {result}")


if __name__ == "__main__":
    asyncio.run(main())
