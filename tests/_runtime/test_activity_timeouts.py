"""Retries stopped by the schedule-to-close budget fail as on Temporal (issue 10):
``ActivityError`` → ``TimeoutError(SCHEDULE_TO_CLOSE)`` → the last attempt's failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from dbosify import activity, workflow
from dbosify.client import Client, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType
from dbosify.worker import Worker

Q = "s2c-q"


@activity.defn
async def always_fails() -> None:
    raise ApplicationError(f"attempt {activity.info().attempt} failed", type="Broken")


@activity.defn
async def fails_then_hangs() -> None:
    if activity.info().attempt == 1:
        raise ApplicationError("attempt 1 failed", type="Broken")
    await asyncio.sleep(30)


@workflow.defn
class Budgeted:
    @workflow.run
    async def run(self, name: str, backoff_ms: int) -> None:
        await workflow.execute_activity(
            name, schedule_to_close_timeout=timedelta(milliseconds=600),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=backoff_ms),
                                     backoff_coefficient=1.0))


# The next attempt would start after the budget (a 2 s backoff), or the budget runs out while an
# attempt hangs (after attempt 1 failed): either way the cause is attempt 1's failure.
@pytest.mark.parametrize(("name", "backoff_ms"), [("always_fails", 2000),
                                                  ("fails_then_hangs", 50)])
async def test_schedule_to_close_ends_retries_with_the_last_failure_as_cause(
        client: Client, name: str, backoff_ms: int) -> None:
    async with Worker(client, task_queue=Q, workflows=[Budgeted],
                      activities=[always_fails, fails_then_hangs]):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(Budgeted.run, args=[name, backoff_ms],
                                          id=f"s2c-{uuid.uuid4()}", task_queue=Q)
    err = info.value.cause
    assert isinstance(err, ActivityError)
    timeout = err.cause
    assert isinstance(timeout, TimeoutError)
    assert timeout.type == TimeoutType.SCHEDULE_TO_CLOSE
    last = timeout.cause
    assert isinstance(last, ApplicationError)
    assert (last.type, last.message) == ("Broken", "attempt 1 failed")
