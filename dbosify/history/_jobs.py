"""Events written for the jobs of an activation: what happened to the run since its last task.

Each job the engine fed the workflow stands for one or two events the server would have appended
before scheduling the workflow task that delivered it. Core builds these jobs from those events on
replay; the failures in them are wrapped the way Core wraps them, so the events carry the inner
(raw) failure and Core wraps it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from temporalio.api.common.v1 import WorkflowType
from temporalio.api.enums.v1 import RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    ActivityTaskCanceledEventAttributes,
    ActivityTaskCompletedEventAttributes,
    ActivityTaskFailedEventAttributes,
    ActivityTaskStartedEventAttributes,
    ActivityTaskTimedOutEventAttributes,
    ChildWorkflowExecutionCanceledEventAttributes,
    ChildWorkflowExecutionCompletedEventAttributes,
    ChildWorkflowExecutionFailedEventAttributes,
    ChildWorkflowExecutionStartedEventAttributes,
    ChildWorkflowExecutionTerminatedEventAttributes,
    ChildWorkflowExecutionTimedOutEventAttributes,
    ExternalWorkflowExecutionCancelRequestedEventAttributes,
    ExternalWorkflowExecutionSignaledEventAttributes,
    RequestCancelExternalWorkflowExecutionFailedEventAttributes,
    SignalExternalWorkflowExecutionFailedEventAttributes,
    StartChildWorkflowExecutionFailedEventAttributes,
    TimerFiredEventAttributes,
    WorkflowExecutionCancelRequestedEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
)
from temporalio.bridge.proto.activity_result import ActivityResolution
from temporalio.bridge.proto.child_workflow import (
    ChildWorkflowCancellationType,
    ChildWorkflowResult,
)
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType, WorkflowCommand

from dbosify._records import WorkflowTask
from dbosify.history import _events
from dbosify.history._state import Child, External

if TYPE_CHECKING:
    from dbosify.history._build import HistoryBuilder


def _unwrap(failure: Failure, wrapper_info: str) -> tuple[Failure, Failure | None]:
    """The raw failure and Core's wrapper around it (``None`` if the job held it unwrapped)."""
    if failure.HasField(wrapper_info):  # type: ignore[arg-type]
        return (failure.cause if failure.HasField("cause") else Failure()), failure
    return failure, None


def _cancel_details_source(failure: Failure) -> Failure:
    return failure.cause if failure.HasField("activity_failure_info") else failure


def _cancelled_in(
    commands: Sequence[WorkflowCommand], variant: str, seq_field: str, seq: int
) -> bool:
    return any(
        c.WhichOneof("variant") == variant and getattr(getattr(c, variant), seq_field) == seq
        for c in commands
    )


def resolved_by_core(
    builder: HistoryBuilder, job: WorkflowActivationJob, pending: Sequence[WorkflowCommand]
) -> bool:
    """Whether Core, not the server, produced ``job`` (so no event stands for it).

    Core answers a cancellation itself unless the workflow waits for it to complete, and always
    when the cancelled command never reached the server (``pending`` holds the commands of the
    current workflow task, not yet written). Local activities also resolve inside the task.
    """
    variant = job.WhichOneof("variant")
    if variant == "resolve_activity":
        ra = job.resolve_activity
        if ra.is_local:
            return True
        if ra.result.WhichOneof("status") != "cancelled":
            return False
        activity = builder.activities.get(ra.seq)
        cancelled_now = _cancelled_in(pending, "request_cancel_activity", "seq", ra.seq)
        if activity is None:
            return cancelled_now
        if cancelled_now:
            return (
                activity.cancellation_type != ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            )
        return activity.resolves_on_cancel()
    if variant == "resolve_child_workflow_execution_start":
        return job.resolve_child_workflow_execution_start.WhichOneof("status") == "cancelled"
    if variant == "resolve_child_workflow_execution":
        rc = job.resolve_child_workflow_execution
        if rc.result.WhichOneof("status") != "cancelled":
            return False
        child = builder.children.get(rc.seq)
        if _cancelled_in(pending, "cancel_child_workflow_execution", "child_workflow_seq", rc.seq):
            return child is None or child.cancellation_type in (
                ChildWorkflowCancellationType.ABANDON,
                ChildWorkflowCancellationType.TRY_CANCEL,
            )
        return child is None or child.resolves_on_cancel()
    if variant == "resolve_signal_external_workflow":
        # Once sent, a signal cannot be cancelled: only one cancelled before it was sent (so
        # never written) resolves with a cancellation, and Core is the one resolving it.
        rs = job.resolve_signal_external_workflow
        return rs.failure.HasField("canceled_failure_info") and rs.seq not in builder.signals
    return False


def write_job(
    builder: HistoryBuilder, job: WorkflowActivationJob, task: WorkflowTask, time_ms: int
) -> None:
    """Write the events that stand for ``job``, delivered at ``time_ms``."""
    variant = job.WhichOneof("variant")
    if variant == "resolve_activity":
        _resolve_activity(builder, job, task, time_ms)
    elif variant == "fire_timer":
        timer = builder.timers.get(job.fire_timer.seq)
        if timer is None:
            raise ValueError(f"FireTimer for unknown timer seq {job.fire_timer.seq}")
        timer.done = True
        builder.add(
            TimerFiredEventAttributes(
                timer_id=timer.timer_id, started_event_id=timer.started_event_id
            ),
            time_ms=time_ms,
        )
    elif variant == "signal_workflow":
        sig = job.signal_workflow
        builder.add(
            WorkflowExecutionSignaledEventAttributes(
                signal_name=sig.signal_name,
                input=_events.payloads(sig.input),
                identity=sig.identity,
                header=_events.header(sig.headers),
            ),
            time_ms=time_ms,
        )
    elif variant == "cancel_workflow":
        builder.add(
            WorkflowExecutionCancelRequestedEventAttributes(cause=job.cancel_workflow.reason),
            time_ms=time_ms,
        )
    elif variant == "do_update":
        # No event yet: Temporal writes the request into UPDATE_ACCEPTED, which Core turns back
        # into this job on replay; a rejected update leaves no trace.
        builder.update_requests[job.do_update.protocol_instance_id] = job
    elif variant == "resolve_child_workflow_execution_start":
        _resolve_child_start(builder, job, time_ms)
    elif variant == "resolve_child_workflow_execution":
        _resolve_child(builder, job, time_ms)
    elif variant == "resolve_signal_external_workflow":
        _resolve_signal_external(builder, job, time_ms)
    elif variant == "resolve_request_cancel_external_workflow":
        _resolve_cancel_external(builder, job, time_ms)
    # initialize_workflow is the started event; notify_has_patch is read from the marker;
    # update_random_seed comes from a workflow reset, not from an event; nexus is unsupported.


def _resolve_activity(
    builder: HistoryBuilder, job: WorkflowActivationJob, task: WorkflowTask, time_ms: int
) -> None:
    ra = job.resolve_activity
    if resolved_by_core(builder, job, ()):
        return
    activity = builder.activities.get(ra.seq)
    if activity is None:
        raise ValueError(f"ResolveActivity for unknown activity seq {ra.seq}")
    activity.resolved = True
    info = task.activity_attempts.get(ra.seq)
    identity = info.identity if info is not None else builder.identity
    result: ActivityResolution = ra.result
    status = result.WhichOneof("status")

    def started() -> int:
        # Temporal writes the started event of an activity when its last attempt ends.
        attrs = ActivityTaskStartedEventAttributes(
            scheduled_event_id=activity.scheduled_event_id,
            identity=identity,
            attempt=info.attempt if info is not None else 1,
        )
        if info is not None and info.last_failure is not None:
            attrs.last_failure.CopyFrom(info.last_failure)
        start_ms = info.started_ms if info is not None else time_ms
        return builder.add(attrs, time_ms=min(start_ms, time_ms))

    if status == "completed":
        started_id = started()
        completed = ActivityTaskCompletedEventAttributes(
            scheduled_event_id=activity.scheduled_event_id,
            started_event_id=started_id,
            identity=identity,
        )
        if result.completed.HasField("result"):
            completed.result.CopyFrom(_events.payloads([result.completed.result]))
        builder.add(completed, time_ms=time_ms)
    elif status == "failed":
        raw, wrapper = _unwrap(result.failed.failure, "activity_failure_info")
        retry_state = (
            wrapper.activity_failure_info.retry_state
            if wrapper is not None
            else RetryState.RETRY_STATE_UNSPECIFIED
        )
        if raw.HasField("timeout_failure_info"):
            ran = info is not None or raw.timeout_failure_info.timeout_type in (
                TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE,
                TimeoutType.TIMEOUT_TYPE_HEARTBEAT,
            )
            builder.add(
                ActivityTaskTimedOutEventAttributes(
                    failure=raw,
                    scheduled_event_id=activity.scheduled_event_id,
                    started_event_id=started() if ran else 0,
                    retry_state=retry_state,
                ),
                time_ms=time_ms,
            )
        else:
            if wrapper is not None and wrapper.activity_failure_info.identity:
                identity = wrapper.activity_failure_info.identity
            builder.add(
                ActivityTaskFailedEventAttributes(
                    failure=raw,
                    scheduled_event_id=activity.scheduled_event_id,
                    started_event_id=started(),
                    identity=identity,
                    retry_state=retry_state,
                ),
                time_ms=time_ms,
            )
    elif status == "cancelled":
        source = _cancel_details_source(result.cancelled.failure)
        canceled = ActivityTaskCanceledEventAttributes(
            latest_cancel_requested_event_id=activity.cancel_requested_event_id,
            scheduled_event_id=activity.scheduled_event_id,
            started_event_id=started() if info is not None else 0,
            identity=identity,
        )
        if source.canceled_failure_info.HasField("details"):
            canceled.details.CopyFrom(source.canceled_failure_info.details)
        builder.add(canceled, time_ms=time_ms)
    # "backoff" is for local activities only.


def _child(builder: HistoryBuilder, seq: int) -> Child:
    child = builder.children.get(seq)
    if child is None:
        raise ValueError(f"child workflow resolution for unknown seq {seq}")
    return child


def _resolve_child_start(builder: HistoryBuilder, job: WorkflowActivationJob, time_ms: int) -> None:
    rs = job.resolve_child_workflow_execution_start
    status = rs.WhichOneof("status")
    if status == "cancelled":
        return  # cancelled before Core sent the start: neither the start nor this is history
    child = _child(builder, rs.seq)
    if status == "succeeded":
        child.run_id = rs.succeeded.run_id
        child.started_event_id = builder.add(
            ChildWorkflowExecutionStartedEventAttributes(
                namespace=child.namespace,
                initiated_event_id=child.initiated_event_id,
                workflow_execution=child.execution(),
                workflow_type=WorkflowType(name=child.workflow_type),
            ),
            time_ms=time_ms,
        )
    elif status == "failed":
        child.resolved = True
        builder.add(
            StartChildWorkflowExecutionFailedEventAttributes(
                namespace=child.namespace,
                workflow_id=child.workflow_id,
                workflow_type=WorkflowType(name=child.workflow_type),
                # Core's StartChildWorkflowExecutionFailedCause numbers its values as the API.
                cause=rs.failed.cause,  # type: ignore[arg-type]
                initiated_event_id=child.initiated_event_id,
                workflow_task_completed_event_id=child.workflow_task_completed_event_id,
            ),
            time_ms=time_ms,
        )


def _resolve_child(builder: HistoryBuilder, job: WorkflowActivationJob, time_ms: int) -> None:
    rc = job.resolve_child_workflow_execution
    if resolved_by_core(builder, job, ()):
        return
    child = _child(builder, rc.seq)
    child.resolved = True
    result: ChildWorkflowResult = rc.result
    common = {
        "namespace": child.namespace,
        "workflow_execution": child.execution(),
        "workflow_type": WorkflowType(name=child.workflow_type),
        "initiated_event_id": child.initiated_event_id,
        "started_event_id": child.started_event_id,
    }
    status = result.WhichOneof("status")
    if status == "completed":
        done = ChildWorkflowExecutionCompletedEventAttributes(**common)  # type: ignore[arg-type]
        if result.completed.HasField("result"):
            done.result.CopyFrom(_events.payloads([result.completed.result]))
        builder.add(done, time_ms=time_ms)
    elif status == "failed":
        raw, wrapper = _unwrap(result.failed.failure, "child_workflow_execution_failure_info")
        retry_state = (
            wrapper.child_workflow_execution_failure_info.retry_state
            if wrapper is not None
            else RetryState.RETRY_STATE_UNSPECIFIED
        )
        if raw.HasField("timeout_failure_info"):
            builder.add(
                ChildWorkflowExecutionTimedOutEventAttributes(
                    retry_state=retry_state,
                    **common,  # type: ignore[arg-type]
                ),
                time_ms=time_ms,
            )
        elif raw.HasField("terminated_failure_info"):
            builder.add(
                ChildWorkflowExecutionTerminatedEventAttributes(**common),  # type: ignore[arg-type]
                time_ms=time_ms,
            )
        else:
            builder.add(
                ChildWorkflowExecutionFailedEventAttributes(
                    failure=raw,
                    retry_state=retry_state,
                    **common,  # type: ignore[arg-type]
                ),
                time_ms=time_ms,
            )
    elif status == "cancelled":
        source, _ = _unwrap(result.cancelled.failure, "child_workflow_execution_failure_info")
        canceled = ChildWorkflowExecutionCanceledEventAttributes(**common)  # type: ignore[arg-type]
        if source.canceled_failure_info.HasField("details"):
            canceled.details.CopyFrom(source.canceled_failure_info.details)
        builder.add(canceled, time_ms=time_ms)


def write_child_cancel_requested(builder: HistoryBuilder, child: Child, time_ms: int) -> None:
    """EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED for Core's own cancel request of a child."""
    builder.add(
        ExternalWorkflowExecutionCancelRequestedEventAttributes(
            initiated_event_id=child.cancel_initiated_event_id,
            namespace=child.namespace,
            workflow_execution=child.execution(),
        ),
        time_ms=time_ms,
    )


def _resolve_signal_external(
    builder: HistoryBuilder, job: WorkflowActivationJob, time_ms: int
) -> None:
    if resolved_by_core(builder, job, ()):
        return
    rs = job.resolve_signal_external_workflow
    _resolve_external(
        builder,
        builder.signals.get(rs.seq),
        rs.cause if rs.HasField("failure") else None,
        ExternalWorkflowExecutionSignaledEventAttributes,
        SignalExternalWorkflowExecutionFailedEventAttributes,
        time_ms,
        unknown=f"ResolveSignalExternalWorkflow for unknown seq {rs.seq}",
    )


def _resolve_cancel_external(
    builder: HistoryBuilder, job: WorkflowActivationJob, time_ms: int
) -> None:
    rc = job.resolve_request_cancel_external_workflow
    _resolve_external(
        builder,
        builder.cancels.get(rc.seq),
        rc.cause if rc.HasField("failure") else None,
        ExternalWorkflowExecutionCancelRequestedEventAttributes,
        RequestCancelExternalWorkflowExecutionFailedEventAttributes,
        time_ms,
        unknown=f"ResolveRequestCancelExternalWorkflow for unknown seq {rc.seq}",
    )


def _resolve_external(
    builder: HistoryBuilder,
    sent: External | None,
    failure_cause: int | None,
    delivered: Callable[..., Message],
    failed: Callable[..., Message],
    time_ms: int,
    *,
    unknown: str,
) -> None:
    # A signal and a cancel request to another workflow resolve alike: the server writes the
    # same fields into the event for a delivery and into the one for a failure (with its cause).
    if sent is None:
        raise ValueError(unknown)
    if failure_cause is None:
        builder.add(
            delivered(
                initiated_event_id=sent.initiated_event_id,
                namespace=sent.namespace,
                workflow_execution=sent.execution,
            ),
            time_ms=time_ms,
        )
        return
    builder.add(
        failed(
            cause=failure_cause,
            workflow_task_completed_event_id=sent.workflow_task_completed_event_id,
            namespace=sent.namespace,
            workflow_execution=sent.execution,
            initiated_event_id=sent.initiated_event_id,
        ),
        time_ms=time_ms,
    )
