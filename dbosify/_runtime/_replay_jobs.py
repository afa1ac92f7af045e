"""The activation jobs Core feeds workflow code when it replays a history (DESIGN §5).

Each event that answers the code (an activity or timer resolution, a signal, a child's outcome,
a local activity marker, an accepted update) becomes the job Core would build from it, with the
failures wrapped as Core wraps them. :class:`CoreMemory` is what Core keeps across workflow tasks
to know which of the code's commands an event answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import RetryState
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.activity_result import ActivityResolution
from temporalio.bridge.proto.workflow_activation import InitializeWorkflow, WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType, WorkflowCommand

from dbosify._runtime._run_children import ChildState, start_cancelled_job
from dbosify._runtime._run_messages import signal_cancelled_job
from dbosify._runtime._run_state import signal_job, update_job
from dbosify.history._events import LOCAL_ACTIVITY_MARKER_NAME, copy_set_fields
from dbosify.history._rows import event_type_name, linked_event_id
from dbosify.history._seed import core_randomness_seed


@dataclass
class CoreMemory:
    """What Core remembers across tasks: each recorded command's sequence number, keyed by
    the id of the event that recorded it, and options of the code's commands."""

    by_event: dict[int, tuple[str, int]] = field(default_factory=dict)
    activity_cancel_type: dict[int, ActivityCancellationType.ValueType] = field(
        default_factory=dict)
    activity_meta: dict[int, tuple[str, str]] = field(default_factory=dict)
    resolved_activities: set[int] = field(default_factory=set)
    fired_timers: set[int] = field(default_factory=set)
    accepted_updates: set[str] = field(default_factory=set)
    patches: set[str] = field(default_factory=set)
    local_scheduled: dict[int, WorkflowCommand] = field(default_factory=dict)
    """Local activities the code scheduled whose marker has not been met yet."""
    local_here: dict[int, tuple[HistoryEvent, dict[str, Any]]] = field(default_factory=dict)
    """The local activity markers of the task being replayed, by seq."""


def initialize_job(started: HistoryEvent, workflow_id: str) -> WorkflowActivationJob:
    """``InitializeWorkflow`` as Core builds it from WORKFLOW_EXECUTION_STARTED."""
    a = started.workflow_execution_started_event_attributes
    run_id = a.original_execution_run_id or a.first_execution_run_id
    init = InitializeWorkflow(
        workflow_type=a.workflow_type.name,
        workflow_id=a.workflow_id or workflow_id,
        arguments=list(a.input.payloads),
        randomness_seed=core_randomness_seed(run_id),
        headers=dict(a.header.fields),
        identity=a.identity,
        continued_from_execution_run_id=a.continued_execution_run_id,
        continued_initiator=a.initiator,
        first_execution_run_id=a.first_execution_run_id,
        attempt=a.attempt or 1,
        cron_schedule=a.cron_schedule,
        original_execution_run_id=run_id,
    )
    copy_set_fields(a, init, (
        "workflow_execution_timeout", "workflow_run_timeout", "workflow_task_timeout",
        "continued_failure", "last_completion_result", "retry_policy",
        "workflow_execution_expiration_time", "memo", "search_attributes", "priority"))
    if a.HasField("parent_workflow_execution"):
        init.parent_workflow_info.namespace = a.parent_workflow_namespace
        init.parent_workflow_info.workflow_id = a.parent_workflow_execution.workflow_id
        init.parent_workflow_info.run_id = a.parent_workflow_execution.run_id
    if a.HasField("root_workflow_execution"):
        init.root_workflow.workflow_id = a.root_workflow_execution.workflow_id
        init.root_workflow.run_id = a.root_workflow_execution.run_id
    init.start_time.CopyFrom(started.event_time)
    return WorkflowActivationJob(initialize_workflow=init)


def _activity_failure(message: str, cause: Failure | None, meta: tuple[str, str],
                      retry_state: int, identity: str, scheduled_id: int,
                      started_id: int) -> Failure:
    # Core's wrapping (activity_state_machine.rs: new_failure / new_timeout_failure).
    failure = Failure(message=message)
    if cause is not None:
        failure.cause.CopyFrom(cause)
    info = failure.activity_failure_info
    info.activity_type.name, info.activity_id = meta
    info.identity = identity
    info.retry_state = retry_state  # type: ignore[assignment]
    info.scheduled_event_id = scheduled_id
    info.started_event_id = started_id
    return failure


def local_marker_data(event: HistoryEvent) -> dict[str, Any] | None:
    """The ``LocalActivityMarkerData`` of a local activity marker (``None`` for other events)."""
    if not event.HasField("marker_recorded_event_attributes"):
        return None
    attrs = event.marker_recorded_event_attributes
    if attrs.marker_name != LOCAL_ACTIVITY_MARKER_NAME or "data" not in attrs.details:
        return None
    try:
        data: dict[str, Any] = json.loads(attrs.details["data"].payloads[0].data)
    except (IndexError, ValueError):
        return None
    return data


def _local_resolution(event: HistoryEvent, data: dict[str, Any],
                      command: WorkflowCommand) -> WorkflowActivationJob:
    """The resolution Core makes of a local activity marker on replay (ResolveDat from the
    marker's data, local_activity_state_machine.rs): its result, its recorded failure (a
    cancellation wrapped as Core wraps it), or the DoBackoff it recorded."""
    attrs = event.marker_recorded_event_attributes
    cmd = command.schedule_local_activity
    job = WorkflowActivationJob()
    job.resolve_activity.seq = cmd.seq
    job.resolve_activity.is_local = True
    result: ActivityResolution = job.resolve_activity.result
    if data.get("backoff"):
        result.backoff.attempt = int(data.get("attempt", 1)) + 1
        result.backoff.backoff_duration.seconds = int(data["backoff"].get("seconds", 0))
        result.backoff.backoff_duration.nanos = int(data["backoff"].get("nanos", 0))
        original = data.get("original_schedule_time")
        if original:
            result.backoff.original_schedule_time.seconds = int(original.get("seconds", 0))
            result.backoff.original_schedule_time.nanos = int(original.get("nanos", 0))
    elif attrs.HasField("failure"):
        failure = attrs.failure
        if failure.HasField("canceled_failure_info") or (
                failure.HasField("cause") and failure.cause.HasField("canceled_failure_info")):
            wrapped = _activity_failure(
                "Local Activity cancelled", failure, (cmd.activity_type, cmd.activity_id),
                RetryState.RETRY_STATE_CANCEL_REQUESTED, "", 0, 0) \
                if failure.HasField("canceled_failure_info") else failure
            result.cancelled.failure.CopyFrom(wrapped)
        else:
            result.failed.failure.CopyFrom(failure)
    else:
        result.completed.SetInParent()
        if "result" in attrs.details and attrs.details["result"].payloads:
            result.completed.result.CopyFrom(attrs.details["result"].payloads[0])
    return job


def local_jobs(commands: Sequence[WorkflowCommand], memory: CoreMemory,
                delivered: set[int]) -> list[WorkflowActivationJob]:
    """Local activities the task's markers resolve, in the activation after the one that
    scheduled them (or, for one scheduled in an earlier task, after the task's first)."""
    for command in commands:
        if command.HasField("schedule_local_activity"):
            memory.local_scheduled[command.schedule_local_activity.seq] = command
    jobs: list[WorkflowActivationJob] = []
    for seq, command in memory.local_scheduled.items():
        if seq in memory.local_here and seq not in delivered:
            delivered.add(seq)
            event, data = memory.local_here[seq]
            jobs.append(_local_resolution(event, data, command))
    return jobs


def job_for(event: HistoryEvent, memory: CoreMemory) -> WorkflowActivationJob | None:
    """The job Core feeds the code for one event, ``None`` when it feeds none."""
    kind = event_type_name(event)
    link = linked_event_id(event) or 0
    if kind == "WORKFLOW_EXECUTION_SIGNALED":
        return signal_job(event.workflow_execution_signaled_event_attributes)
    if kind == "WORKFLOW_EXECUTION_CANCEL_REQUESTED":
        job = WorkflowActivationJob()
        job.cancel_workflow.reason = event.workflow_execution_cancel_requested_event_attributes.cause
        return job
    if kind.startswith("ACTIVITY_TASK_"):
        known = memory.by_event.get(link)
        if known is None:
            return None
        seq = known[1]
        memory.resolved_activities.add(seq)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = seq
        result: ActivityResolution = job.resolve_activity.result
        meta = memory.activity_meta.get(seq, ("", str(seq)))
        if kind == "ACTIVITY_TASK_COMPLETED":
            done = event.activity_task_completed_event_attributes
            result.completed.SetInParent()
            if done.result.payloads:
                result.completed.result.CopyFrom(done.result.payloads[0])
        elif kind == "ACTIVITY_TASK_FAILED":
            f = event.activity_task_failed_event_attributes
            result.failed.failure.CopyFrom(_activity_failure(
                "Activity task failed", f.failure, meta, f.retry_state, f.identity,
                f.scheduled_event_id, f.started_event_id))
        elif kind == "ACTIVITY_TASK_TIMED_OUT":
            t = event.activity_task_timed_out_event_attributes
            result.failed.failure.CopyFrom(_activity_failure(
                "Activity task timed out", t.failure, meta, t.retry_state, "",
                t.scheduled_event_id, t.started_event_id))
        else:  # CANCELED
            c = event.activity_task_canceled_event_attributes
            cause = Failure()
            cause.canceled_failure_info.SetInParent()
            if c.HasField("details"):
                cause.canceled_failure_info.details.CopyFrom(c.details)
            result.cancelled.failure.CopyFrom(_activity_failure(
                "Activity cancelled", cause, meta, RetryState.RETRY_STATE_CANCEL_REQUESTED,
                c.identity, c.scheduled_event_id, c.started_event_id))
        return job
    if kind == "TIMER_FIRED":
        known = memory.by_event.get(link)
        if known is None:
            return None
        memory.fired_timers.add(known[1])
        job = WorkflowActivationJob()
        job.fire_timer.seq = known[1]
        return job
    return _child_or_external_job(event, kind, memory)


def _child_or_external_job(event: HistoryEvent, kind: str,
                           memory: CoreMemory) -> WorkflowActivationJob | None:
    known = memory.by_event.get(linked_event_id(event) or 0)
    if known is None:
        return None
    what, seq = known
    job = WorkflowActivationJob()
    if kind == "CHILD_WORKFLOW_EXECUTION_STARTED":
        job.resolve_child_workflow_execution_start.seq = seq
        job.resolve_child_workflow_execution_start.succeeded.run_id = (
            event.child_workflow_execution_started_event_attributes.workflow_execution.run_id)
        return job
    if kind == "START_CHILD_WORKFLOW_EXECUTION_FAILED":
        f = event.start_child_workflow_execution_failed_event_attributes
        start = job.resolve_child_workflow_execution_start
        start.seq = seq
        start.failed.workflow_id = f.workflow_id
        start.failed.workflow_type = f.workflow_type.name
        start.failed.cause = f.cause  # type: ignore[assignment]
        return job
    if kind.startswith("CHILD_WORKFLOW_EXECUTION_"):
        attrs: Any = getattr(event, event.WhichOneof("attributes") or "")
        child = job.resolve_child_workflow_execution
        child.seq = seq
        if kind == "CHILD_WORKFLOW_EXECUTION_COMPLETED":
            child.result.completed.SetInParent()
            if attrs.result.payloads:
                child.result.completed.result.CopyFrom(attrs.result.payloads[0])
            return job
        # Core's wrapping (child_workflow_state_machine.rs).
        wrapper = Failure()
        info = wrapper.child_workflow_execution_failure_info
        info.namespace = attrs.namespace
        info.workflow_execution.CopyFrom(attrs.workflow_execution)
        info.workflow_type.CopyFrom(attrs.workflow_type)
        info.initiated_event_id = attrs.initiated_event_id
        info.started_event_id = attrs.started_event_id
        if kind == "CHILD_WORKFLOW_EXECUTION_FAILED":
            wrapper.message = "Child Workflow execution failed"
            wrapper.cause.CopyFrom(attrs.failure)
            info.retry_state = attrs.retry_state
        elif kind == "CHILD_WORKFLOW_EXECUTION_TIMED_OUT":
            wrapper.message = "Child Workflow execution timed out"
            wrapper.cause.message = "Timed out"
            wrapper.cause.timeout_failure_info.SetInParent()
            info.retry_state = attrs.retry_state
        elif kind == "CHILD_WORKFLOW_EXECUTION_TERMINATED":
            wrapper.message = "Child Workflow execution terminated"
            wrapper.cause.message = "Terminated"
            wrapper.cause.terminated_failure_info.SetInParent()
        else:
            wrapper.message = "Child Workflow execution cancelled"
            wrapper.cause.canceled_failure_info.SetInParent()
            if attrs.HasField("details"):
                wrapper.cause.canceled_failure_info.details.CopyFrom(attrs.details)
            child.result.cancelled.failure.CopyFrom(wrapper)
            return job
        child.result.failed.failure.CopyFrom(wrapper)
        return job
    if what == "cancel_child":
        return None  # Core's own request for a child it cancels: nothing for the code
    if kind in ("EXTERNAL_WORKFLOW_EXECUTION_SIGNALED", "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED"):
        job.resolve_signal_external_workflow.seq = seq
        if kind.endswith("FAILED"):
            failure = job.resolve_signal_external_workflow.failure
            failure.message = "Unable to signal external workflow because it was not found"
            failure.application_failure_info.type = "SignalExternalWorkflowExecutionFailed"
        return job
    job.resolve_request_cancel_external_workflow.seq = seq
    if kind.endswith("FAILED"):
        failure = job.resolve_request_cancel_external_workflow.failure
        failure.message = "Unable to cancel external workflow because not found"
        failure.application_failure_info.type = "RequestCancelExternalWorkflowExecutionFailed"
    return job


def accepted_update_job(event: HistoryEvent) -> WorkflowActivationJob:
    """The update an UPDATE_ACCEPTED event re-delivers on replay."""
    accepted = event.workflow_execution_update_accepted_event_attributes
    # An accepted update is not validated again on replay.
    return update_job(accepted.accepted_request, accepted.protocol_instance_id,
                      run_validator=False)


def resolved_by_core(commands: Sequence[WorkflowCommand], memory: CoreMemory,
                     resolved_now: set[int], task_commands: Sequence[WorkflowCommand] = (),
                     namespace: str = "") -> list[WorkflowActivationJob]:
    """Jobs Core answers itself inside the task: an activity the code cancels without waiting
    for the cancellation resolves at once (activity_state_machine.rs); so do a child start and
    a signal to another workflow cancelled in the task that asked for them (``task_commands``:
    the task's commands so far), which never reach the server. Activities resolved go into
    ``resolved_now``: their cancel request itself still reaches the history."""
    jobs: list[WorkflowActivationJob] = []
    for command in commands:
        variant = command.WhichOneof("variant")
        if variant == "cancel_child_workflow_execution":
            cancel = command.cancel_child_workflow_execution
            start = next((c.start_child_workflow_execution for c in task_commands
                          if c.WhichOneof("variant") == "start_child_workflow_execution"
                          and c.start_child_workflow_execution.seq == cancel.child_workflow_seq),
                         None)
            if start is not None:
                child = ChildState(seq=start.seq, command=start, reason=cancel.reason)
                jobs.append(start_cancelled_job(child, start.namespace or namespace))
            continue
        if variant == "cancel_signal_workflow":
            seq = command.cancel_signal_workflow.seq
            if any(c.WhichOneof("variant") == "signal_external_workflow_execution"
                   and c.signal_external_workflow_execution.seq == seq for c in task_commands):
                jobs.append(signal_cancelled_job(seq))
            continue
        if variant != "request_cancel_activity":
            continue
        seq = command.request_cancel_activity.seq
        kind = memory.activity_cancel_type.get(seq, ActivityCancellationType.TRY_CANCEL)
        if seq in memory.resolved_activities or seq in resolved_now or kind == (
                ActivityCancellationType.WAIT_CANCELLATION_COMPLETED):
            continue
        resolved_now.add(seq)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = seq
        cause = Failure()
        cause.canceled_failure_info.SetInParent()
        job.resolve_activity.result.cancelled.failure.CopyFrom(_activity_failure(
            "Activity cancelled", cause, memory.activity_meta.get(seq, ("", str(seq))),
            RetryState.RETRY_STATE_CANCEL_REQUESTED, "", 0, 0))
        jobs.append(job)
    return jobs
