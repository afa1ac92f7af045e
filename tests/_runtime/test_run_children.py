"""The child-workflow bookkeeping of a run, without a database: how a child's close becomes the
job Core would give the parent, and a close that arrives before the child's start is resolved."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand

from dbosify._runtime._child_close import CHILD_CLOSED
from dbosify._runtime._run_children import ChildrenPart, ChildState, child_run_id, close_job
from dbosify._store._inbox import InboxEvent


class _Run:
    """The run a children part belongs to (:class:`~dbosify._runtime._run_context.RunContext`)."""

    def __init__(self) -> None:
        self.process: Any = None
        self.run_id = "parent-run"
        self.wake = asyncio.Event()
        self.row = SimpleNamespace(namespace="default", workflow_id="parent", task_queue="q")
        self.recovering = False
        self.closed = False
        self.task_failure: str | None = None
        self.history_length = 1
        self.pending_jobs: list[WorkflowActivationJob] = []

    def deliver(self, job: WorkflowActivationJob) -> None:
        self.pending_jobs.append(job)
        self.wake.set()


def _part() -> tuple[_Run, ChildrenPart]:
    run = _Run()
    return run, ChildrenPart(run)


def _start(seq: int) -> WorkflowCommand:
    command = WorkflowCommand()
    start = command.start_child_workflow_execution
    start.seq = seq
    start.workflow_id = f"kid-{seq}"
    start.workflow_type = "Kid"
    return command


def _closed(event: HistoryEvent, first_run: str) -> InboxEvent:
    payload = json.dumps({"first_run": first_run, "run": first_run,
                          "event": base64.b64encode(event.SerializeToString()).decode()})
    return InboxEvent(1, "parent-run", CHILD_CLOSED, payload.encode(), 0)


def _completed(value: bytes) -> HistoryEvent:
    event = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    event.workflow_execution_completed_event_attributes.result.payloads.add().data = value
    return event


def test_a_close_before_the_start_is_resolved_resolves_both_in_order() -> None:
    run, part = _part()
    part.apply_command(_start(1))
    part.children[1].starting = True  # The start is being written.
    part.on_child_closed(_closed(_completed(b'"hi"'), child_run_id("parent-run", 1)))
    kinds = [j.WhichOneof("variant") for j in run.pending_jobs]
    assert kinds == ["resolve_child_workflow_execution_start",
                     "resolve_child_workflow_execution"]
    start = run.pending_jobs[0].resolve_child_workflow_execution_start
    assert start.succeeded.run_id == child_run_id("parent-run", 1)
    assert run.pending_jobs[1].resolve_child_workflow_execution.result.completed.result.data \
        == b'"hi"'
    assert part.children == {}  # Nothing held back past the inbox cursor.


def test_a_close_of_another_runs_child_is_ignored() -> None:
    run, part = _part()
    part.apply_command(_start(1))
    part.on_child_closed(_closed(_completed(b"1"), child_run_id("other-run", 1)))
    assert run.pending_jobs == []
    assert 1 in part.children


def test_close_events_become_cores_resolutions() -> None:
    child = ChildState(3, _start(3).start_child_workflow_execution, run_id="r3")
    failed = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)
    failed.workflow_execution_failed_event_attributes.failure.message = "boom"
    failed.workflow_execution_failed_event_attributes.retry_state = \
        RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED
    job = close_job(child, "default", failed).resolve_child_workflow_execution
    failure = job.result.failed.failure
    assert failure.message == "Child Workflow execution failed"
    assert failure.cause.message == "boom"
    info = failure.child_workflow_execution_failure_info
    assert (info.workflow_execution.workflow_id, info.workflow_execution.run_id,
            info.workflow_type.name) == ("kid-3", "r3", "Kid")
    assert info.retry_state == RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED

    terminated = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
    cause = close_job(child, "default", terminated).resolve_child_workflow_execution \
        .result.failed.failure.cause
    assert cause.HasField("terminated_failure_info")

    timed_out = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)
    cause = close_job(child, "default", timed_out).resolve_child_workflow_execution \
        .result.failed.failure.cause
    assert cause.HasField("timeout_failure_info")

    canceled = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED)
    canceled.workflow_execution_canceled_event_attributes.details.payloads.add().data = b"d"
    result = close_job(child, "default", canceled).resolve_child_workflow_execution.result
    assert result.cancelled.failure.cause.canceled_failure_info.details.payloads[0].data == b"d"
