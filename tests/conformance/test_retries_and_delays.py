"""A workflow's own ``RetryPolicy`` (a failed run is retried as a new run) and ``start_delay``.

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType, RetryState

from dbosify import workflow
from dbosify.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

Q = "retries-q"
RAN: list[str] = []


@workflow.defn
class FailsUntil:
    """Fails (retryably, or not) until attempt ``succeed_at``; returns what it saw."""

    @workflow.run
    async def run(self, succeed_at: int, non_retryable: bool) -> str:
        info = workflow.info()
        if info.attempt < succeed_at:
            raise ApplicationError(f"attempt {info.attempt} failed", type="Flaky",
                                   non_retryable=non_retryable)
        return f"attempt {info.attempt}"


@workflow.defn
class WhenStarted:
    @workflow.run
    async def run(self, key: str) -> float:
        if not workflow.unsafe.is_replaying():
            RAN.append(key)
        return workflow.now().timestamp()


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[FailsUntil, WhenStarted])


async def _final_retry_state(client: Client, workflow_id: str) -> int:
    """The retry state on the FAILED event that ended the workflow (its latest run)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.events[-1].workflow_execution_failed_event_attributes.retry_state


def _policy(**kwargs: object) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(milliseconds=100), **kwargs)  # type: ignore[arg-type]


async def test_a_failed_run_is_retried_as_a_new_run(client: Client) -> None:
    workflow_id = f"retried-{uuid.uuid4()}"
    async with _worker(client):
        handle = await client.start_workflow(FailsUntil.run, args=[3, False], id=workflow_id,
                                             task_queue=Q, retry_policy=_policy())
        # result() follows the retries, as on Temporal.
        assert await handle.result() == "attempt 3"
        first = client.get_workflow_handle(workflow_id, run_id=handle.first_execution_run_id)
        assert (await first.describe()).status == WorkflowExecutionStatus.FAILED
        history = await first.fetch_history()
        latest = await client.get_workflow_handle(workflow_id).describe()
    failed = history.events[-1]
    assert failed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    attrs = failed.workflow_execution_failed_event_attributes
    assert attrs.retry_state == RetryState.RETRY_STATE_IN_PROGRESS
    assert attrs.new_execution_run_id
    assert attrs.failure.message == "attempt 1 failed"
    assert latest.status == WorkflowExecutionStatus.COMPLETED
    assert latest.run_id != handle.first_execution_run_id


async def test_retries_stop_at_maximum_attempts(client: Client) -> None:
    workflow_id = f"exhausted-{uuid.uuid4()}"
    async with _worker(client):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(FailsUntil.run, args=[9, False], id=workflow_id,
                                          task_queue=Q, retry_policy=_policy(maximum_attempts=2))
        state = await _final_retry_state(client, workflow_id)
    assert state == RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.message == "attempt 2 failed"


async def test_a_non_retryable_failure_is_not_retried(client: Client) -> None:
    workflow_id = f"fatal-{uuid.uuid4()}"
    async with _worker(client):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(FailsUntil.run, args=[2, True], id=workflow_id,
                                          task_queue=Q, retry_policy=_policy())
        state = await _final_retry_state(client, workflow_id)
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    assert state == RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE
    assert len(runs) == 1
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.message == "attempt 1 failed"


async def test_without_a_retry_policy_a_failure_is_final(client: Client) -> None:
    workflow_id = f"once-{uuid.uuid4()}"
    async with _worker(client):
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(FailsUntil.run, args=[2, False], id=workflow_id,
                                          task_queue=Q)
        state = await _final_retry_state(client, workflow_id)
    assert state == RetryState.RETRY_STATE_RETRY_POLICY_NOT_SET


async def test_start_delay_postpones_the_first_workflow_task(client: Client) -> None:
    key = f"delayed-{uuid.uuid4()}"
    async with _worker(client):
        started = time.time()
        handle = await client.start_workflow(WhenStarted.run, key, id=key, task_queue=Q,
                                             start_delay=timedelta(seconds=1))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert key not in RAN
        now_in_workflow = await handle.result()
        history = await handle.fetch_history()
    assert now_in_workflow >= started + 0.9
    assert time.time() - started >= 1.0
    backoff = history.events[0].workflow_execution_started_event_attributes
    assert backoff.first_workflow_task_backoff.ToMilliseconds() == 1000


async def test_a_run_terminated_during_its_delay_never_runs(client: Client) -> None:
    key = f"never-{uuid.uuid4()}"
    async with _worker(client):
        handle = await client.start_workflow(WhenStarted.run, key, id=key, task_queue=Q,
                                             start_delay=timedelta(seconds=1))
        await handle.terminate("not needed")
        await client.execute_workflow(WhenStarted.run, "after", id=f"after-{key}", task_queue=Q,
                                      start_delay=timedelta(seconds=1.2))
    assert key not in RAN
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
