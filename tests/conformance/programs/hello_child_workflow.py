"""A Temporal-style program using child workflows (a temporalio program, written for these
tests): a parent runs a greeting child and a failing child, signals a third through its handle
and cancels a fourth.

The test runs it with every ``temporalio`` replaced by ``dbosify`` and nothing else changed.
"""

import asyncio
import uuid
from dataclasses import dataclass

from temporalio import workflow
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import ApplicationError, CancelledError, ChildWorkflowError
from temporalio.worker import Worker


@dataclass
class ComposeGreetingInput:
    greeting: str
    name: str


@workflow.defn
class ComposeGreetingWorkflow:
    def __init__(self) -> None:
        self.extra = ""

    @workflow.run
    async def run(self, input: ComposeGreetingInput) -> str:
        if input.name == "nobody":
            raise ApplicationError("no one to greet", type="NoName", non_retryable=True)
        if input.name == "later":
            await workflow.wait_condition(lambda: bool(self.extra))
        return f"{input.greeting}, {input.name}{self.extra}!"

    @workflow.signal
    def add(self, extra: str) -> None:
        self.extra = extra


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> list:
        parent_id = workflow.info().workflow_id
        lines = [await workflow.execute_child_workflow(
            ComposeGreetingWorkflow.run, ComposeGreetingInput("Hello", name),
            id=f"{parent_id}-hello")]
        try:
            await workflow.execute_child_workflow(
                ComposeGreetingWorkflow.run, ComposeGreetingInput("Hello", "nobody"),
                id=f"{parent_id}-nobody")
        except ChildWorkflowError as err:
            lines.append(f"{type(err.cause).__name__}: {err.cause.message}")
        handle = await workflow.start_child_workflow(
            ComposeGreetingWorkflow.run, ComposeGreetingInput("Hi", "later"),
            id=f"{parent_id}-later")
        await handle.signal(ComposeGreetingWorkflow.add, " (signalled)")
        lines.append(await handle)
        waiting = await workflow.start_child_workflow(
            ComposeGreetingWorkflow.run, ComposeGreetingInput("Hey", "later"),
            id=f"{parent_id}-cancelled")
        waiting.cancel()
        try:
            await waiting
        except ChildWorkflowError as err:
            lines.append(f"cancelled: {isinstance(err.cause, CancelledError)}")
        return lines


async def main() -> None:
    config = ClientConfig.load_client_connect_config()
    client = await Client.connect(**config)

    async with Worker(
        client,
        task_queue="hello-child-workflow-task-queue",
        workflows=[GreetingWorkflow, ComposeGreetingWorkflow],
    ):
        result = await client.execute_workflow(
            GreetingWorkflow.run,
            "World",
            id=f"hello-child-workflow-workflow-id-{uuid.uuid4()}",
            task_queue="hello-child-workflow-task-queue",
        )
        for line in result:
            print(f"Result: {line}")


if __name__ == "__main__":
    asyncio.run(main())
