"""``dbosify.testing.WorkflowEnvironment``: temporalio's test environment on a database."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify.client import WorkflowFailureError
from dbosify.exceptions import ApplicationError
from dbosify.testing import WorkflowEnvironment
from dbosify.worker import Worker

Q = "env-q"


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Shout:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Asserts:
    @workflow.run
    async def run(self, value: int) -> int:
        assert value > 0, "value must be positive"
        return value


async def test_start_local_runs_workflows_on_a_database_of_its_own() -> None:
    async with await WorkflowEnvironment.start_local() as env:
        process = current_process()
        assert process is not None
        sqlite_file = Path(process.db.url.removeprefix("sqlite:///"))
        assert sqlite_file.exists()
        async with Worker(env.client, task_queue=Q, workflows=[Shout], activities=[shout]):
            assert await env.client.execute_workflow(Shout.run, "hi", id=f"s-{uuid.uuid4()}",
                                                     task_queue=Q) == "HI"
    # The temporary database is gone with the environment.
    assert not sqlite_file.exists()
    assert not sqlite_file.parent.exists()


async def test_a_failed_assert_fails_the_workflow(database: str) -> None:
    # As temporalio's environment: not a workflow task failure retried for ever.
    async with await WorkflowEnvironment.start_local(database=database) as env:
        async with Worker(env.client, task_queue=Q, workflows=[Asserts]):
            assert await env.client.execute_workflow(Asserts.run, 2, id=f"a-{uuid.uuid4()}",
                                                     task_queue=Q) == 2
            with pytest.raises(WorkflowFailureError) as info:
                await env.client.execute_workflow(Asserts.run, -1, id=f"a-{uuid.uuid4()}",
                                                  task_queue=Q)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "AssertionError"
    assert "value must be positive" in cause.message


async def test_only_the_time_skipping_environment_skips() -> None:
    async with await WorkflowEnvironment.start_local() as env:
        assert not env.supports_time_skipping
        # Per-workflow (V2) controls belong to start_time_skipping_v2(), as in temporalio.
        with pytest.raises(RuntimeError, match="start_time_skipping_v2"):
            await env.get_time_skipping_info(env.client.get_workflow_handle("any"))
    async with await WorkflowEnvironment.start_time_skipping_v2() as env:
        assert env.supports_time_skipping_v2 and not env.supports_time_skipping_v1
