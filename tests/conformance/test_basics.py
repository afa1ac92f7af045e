"""A Temporal program with only its imports changed runs on dbosify, on both backends."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from dbosify import activity, workflow
from dbosify.client import Client, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import ActivityError, ApplicationError
from dbosify.worker import Worker


@activity.defn
async def say_hello(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
async def refuse(name: str) -> str:
    raise ApplicationError("card declined", {"code": 51}, type="PaymentError", non_retryable=True)


@workflow.defn
class Greeting:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(say_hello, name,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Charge:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(refuse, name,
                                               start_to_close_timeout=timedelta(seconds=10),
                                               retry_policy=RetryPolicy(maximum_attempts=3))


async def test_one_activity_workflow(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=[Greeting], activities=[say_hello]):
        result = await client.execute_workflow(Greeting.run, "World", id="greet-1",
                                               task_queue="q")
    assert result == "Hello, World!"


async def test_failure_cause_chain(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=[Charge], activities=[refuse]):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(Charge.run, "x", id=f"c-{uuid.uuid4()}", task_queue="q")
    cause = info.value.cause
    assert isinstance(cause, ActivityError)
    assert cause.activity_type == "refuse"
    app = cause.cause
    assert isinstance(app, ApplicationError)
    assert app.type == "PaymentError" and app.details == ({"code": 51},) and app.non_retryable


async def test_run_waits_for_a_worker(client: Client) -> None:
    handle = await client.start_workflow(Greeting.run, "later", id="waits", task_queue="late")
    described = await handle.describe()
    assert described.status is not None and described.status.name == "RUNNING"
    assert described.raw_description.pending_workflow_task.state != 0
    async with Worker(client, task_queue="late", workflows=[Greeting], activities=[say_hello]):
        assert await handle.result() == "Hello, later!"
