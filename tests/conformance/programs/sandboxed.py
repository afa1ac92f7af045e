"""A workflow in temporalio's sandbox that imports temporalio modules beyond the core ones
(a temporalio program; the test swaps only its imports, so the sandbox re-imports dbosify's
aliases of them).
"""

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

with workflow.unsafe.imports_passed_through():
    from temporalio.contrib.pydantic import pydantic_data_converter

import temporalio.api.common.v1
from temporalio.common import RetryPolicy


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Sandboxed:
    @workflow.run
    async def run(self, text: str) -> str:
        payload = temporalio.api.common.v1.Payload(data=text.encode())
        return await workflow.execute_activity(
            shout, payload.data.decode(), start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=2),
        )


async def main() -> None:
    client = await Client.connect("localhost:7233", data_converter=pydantic_data_converter)
    async with Worker(
        client,
        task_queue="sandboxed-task-queue",
        workflows=[Sandboxed],
        activities=[shout],
        workflow_runner=SandboxedWorkflowRunner(),
    ):
        result = await client.execute_workflow(
            Sandboxed.run, "quiet", id=f"sandboxed-{uuid.uuid4()}",
            task_queue="sandboxed-task-queue",
        )
        print(f"Result: {result}")


if __name__ == "__main__":
    asyncio.run(main())
