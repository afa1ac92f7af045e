"""Replaying a Temporal history against workflow code, event by event (DESIGN §5).

temporalio's ``Replayer`` says whether a history replays; it does not say where the code parts
ways with it. :func:`replay_history` plays Core's part instead: it turns the history's events
into the activations Core would feed the code (``InitializeWorkflow`` from the started event,
activity and timer resolutions, signals, updates, cancel requests, ``NotifyHasPatch`` from patch
markers), runs a fresh temporalio workflow instance of the code on them, and sets each command
the code gives beside the event the history recorded for it. The first command that does not
match its event is the divergence, where the ``Replayer`` raises ``NondeterminismError``.

It needs only the history (a saved ``WorkflowHistory`` JSON will do) and the workflow class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import temporalio.converter
import temporalio.workflow
from temporalio.api.enums.v1 import RetryState
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.activity_result import ActivityResolution
from temporalio.bridge.proto.workflow_activation import (
    InitializeWorkflow,
    WorkflowActivation,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType, WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowInstance, WorkflowRunner

from dbosify._runtime._instance import (
    DEFAULT_DEADLOCK_TIMEOUT,
    WorkflowRegistration,
    activate,
    create_instance,
)
from dbosify.history._events import (
    LOCAL_ACTIVITY_MARKER_NAME,
    PATCH_MARKER_DETAILS_KEY,
    commands_as_sent,
)
from dbosify.history._rows import event_type_name, linked_event_id, own_name, patch_id
from dbosify.history._seed import core_randomness_seed

MATCH = "match"
"""The code gives the command the history recorded."""
DIVERGED = "diverged"
"""The first place the code and the history part ways."""
INPUT = "input"
"""An event Core turns into a job for the code (a resolution, a signal, ...)."""
SKIPPED = "skipped"
"""A recorded patch marker the code no longer asks for; Core lets it pass."""
NOT_REPLAYED = "not replayed"
"""After the divergence: the replay stops there, as Temporal's does."""
NEW = "new"
"""A command of the code beyond the recorded history: what a worker would do next."""

# Events a command produces (written after WORKFLOW_TASK_COMPLETED, matched against commands).
_COMMAND_EVENTS = frozenset({
    "ACTIVITY_TASK_SCHEDULED", "ACTIVITY_TASK_CANCEL_REQUESTED", "TIMER_STARTED",
    "TIMER_CANCELED", "MARKER_RECORDED", "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
    "WORKFLOW_PROPERTIES_MODIFIED", "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
    "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    "WORKFLOW_EXECUTION_UPDATE_ACCEPTED", "WORKFLOW_EXECUTION_UPDATE_COMPLETED",
    "WORKFLOW_EXECUTION_COMPLETED", "WORKFLOW_EXECUTION_FAILED", "WORKFLOW_EXECUTION_CANCELED",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
})

# Which event each command variant must meet.
_EVENT_OF_COMMAND = {
    "schedule_activity": "ACTIVITY_TASK_SCHEDULED",
    "request_cancel_activity": "ACTIVITY_TASK_CANCEL_REQUESTED",
    "start_timer": "TIMER_STARTED",
    "cancel_timer": "TIMER_CANCELED",
    "set_patch_marker": "MARKER_RECORDED",
    "schedule_local_activity": "MARKER_RECORDED",
    "upsert_workflow_search_attributes": "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
    "modify_workflow_properties": "WORKFLOW_PROPERTIES_MODIFIED",
    "start_child_workflow_execution": "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
    "cancel_child_workflow_execution": "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    "signal_external_workflow_execution": "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    "request_cancel_external_workflow_execution":
        "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
    "complete_workflow_execution": "WORKFLOW_EXECUTION_COMPLETED",
    "fail_workflow_execution": "WORKFLOW_EXECUTION_FAILED",
    "cancel_workflow_execution": "WORKFLOW_EXECUTION_CANCELED",
    "continue_as_new_workflow_execution": "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
}


@dataclass
class ReplayRow:
    """One row of a replay: a recorded event and what the code does at that point.

    ``recorded`` describes the event's command (or the job it stands for), ``command`` the
    code's command at the same position (or the job fed to it); ``status`` is one of
    :data:`MATCH`, :data:`DIVERGED`, :data:`INPUT`, :data:`SKIPPED`, :data:`NOT_REPLAYED`,
    :data:`NEW`, or ``""`` for an event that is neither (workflow-task bookkeeping, an activity
    start). A command the code gives where the history has none has no event (``event_id``
    ``None``).
    """

    event_id: int | None
    event_type: str | None
    name: str | None
    recorded: str | None
    command: str | None
    status: str
    note: str = ""

    @property
    def diverged(self) -> bool:
        """Whether this row is the first divergence."""
        return self.status == DIVERGED

    def as_dict(self) -> dict[str, Any]:
        """The row as a dict (with ``diverged``)."""
        return {
            "event_id": self.event_id, "event_type": self.event_type, "name": self.name,
            "recorded": self.recorded, "command": self.command, "status": self.status,
            "diverged": self.diverged, "note": self.note,
        }


@dataclass
class ReplayReport:
    """The outcome of :func:`replay_history`."""

    rows: list[ReplayRow]
    workflow_type: str
    divergence: ReplayRow | None = None
    """The first diverging row, if any."""

    @property
    def diverged(self) -> bool:
        """Whether the code parts ways with the history."""
        return self.divergence is not None


@dataclass
class _Task:
    """One workflow task of the history, as Core would deliver it."""

    scheduled_id: int
    started: HistoryEvent
    job_events: list[HistoryEvent]
    command_events: list[HistoryEvent]
    completed: HistoryEvent | None
    """``None`` for the task a running history ends with (scheduled or started, no outcome)."""


@dataclass
class _Seqs:
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


def _split_tasks(events: Sequence[HistoryEvent]) -> tuple[list[_Task], list[HistoryEvent]]:
    """The completed (or last open) workflow tasks, and events after the last one."""
    tasks: list[_Task] = []
    jobs: list[HistoryEvent] = []
    scheduled_id = 0
    i = 0
    while i < len(events):
        event = events[i]
        kind = event_type_name(event)
        if kind == "WORKFLOW_TASK_SCHEDULED":
            scheduled_id = event.event_id
        elif kind == "WORKFLOW_TASK_STARTED":
            outcome = events[i + 1] if i + 1 < len(events) else None
            outcome_kind = event_type_name(outcome) if outcome is not None else None
            if outcome is None:
                tasks.append(_Task(scheduled_id, event, jobs, [], None))
                return tasks, []
            if outcome_kind == "WORKFLOW_TASK_COMPLETED":
                j = i + 2
                commands: list[HistoryEvent] = []
                while j < len(events) and event_type_name(events[j]) in _COMMAND_EVENTS:
                    commands.append(events[j])
                    j += 1
                tasks.append(_Task(scheduled_id, event, jobs, commands, outcome))
                jobs = []
                i = j
                continue
            # A failed or timed-out task left nothing: its jobs go to the next attempt.
        elif _is_job_event(kind):
            jobs.append(event)
        i += 1
    return tasks, jobs


def _is_job_event(kind: str) -> bool:
    return kind in (
        "WORKFLOW_EXECUTION_STARTED", "ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED",
        "ACTIVITY_TASK_TIMED_OUT", "ACTIVITY_TASK_CANCELED", "TIMER_FIRED",
        "WORKFLOW_EXECUTION_SIGNALED", "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "CHILD_WORKFLOW_EXECUTION_STARTED", "START_CHILD_WORKFLOW_EXECUTION_FAILED",
        "CHILD_WORKFLOW_EXECUTION_COMPLETED", "CHILD_WORKFLOW_EXECUTION_FAILED",
        "CHILD_WORKFLOW_EXECUTION_CANCELED", "CHILD_WORKFLOW_EXECUTION_TIMED_OUT",
        "CHILD_WORKFLOW_EXECUTION_TERMINATED", "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED",
        "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED",
        "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED",
    )


# -- jobs from events ------------------------------------------------------------------------


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
    for name in ("workflow_execution_timeout", "workflow_run_timeout", "workflow_task_timeout",
                 "continued_failure", "last_completion_result", "retry_policy",
                 "workflow_execution_expiration_time", "memo", "search_attributes",
                 "priority"):
        if a.HasField(name):
            getattr(init, name).CopyFrom(getattr(a, name))
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


def _local_jobs(commands: Sequence[WorkflowCommand], seqs: _Seqs,
                delivered: set[int]) -> list[WorkflowActivationJob]:
    """Local activities the task's markers resolve, in the activation after the one that
    scheduled them (or, for one scheduled in an earlier task, after the task's first)."""
    for command in commands:
        if command.HasField("schedule_local_activity"):
            seqs.local_scheduled[command.schedule_local_activity.seq] = command
    jobs: list[WorkflowActivationJob] = []
    for seq, command in seqs.local_scheduled.items():
        if seq in seqs.local_here and seq not in delivered:
            delivered.add(seq)
            event, data = seqs.local_here[seq]
            jobs.append(_local_resolution(event, data, command))
    return jobs


def _job_for(event: HistoryEvent, seqs: _Seqs) -> WorkflowActivationJob | None:
    """The job Core feeds the code for one event, ``None`` when it feeds none."""
    kind = event_type_name(event)
    link = linked_event_id(event) or 0
    if kind == "WORKFLOW_EXECUTION_SIGNALED":
        s = event.workflow_execution_signaled_event_attributes
        job = WorkflowActivationJob()
        job.signal_workflow.signal_name = s.signal_name
        job.signal_workflow.input.extend(s.input.payloads)
        job.signal_workflow.identity = s.identity
        for key, value in s.header.fields.items():
            job.signal_workflow.headers[key].CopyFrom(value)
        return job
    if kind == "WORKFLOW_EXECUTION_CANCEL_REQUESTED":
        job = WorkflowActivationJob()
        job.cancel_workflow.reason = event.workflow_execution_cancel_requested_event_attributes.cause
        return job
    if kind.startswith("ACTIVITY_TASK_"):
        known = seqs.by_event.get(link)
        if known is None:
            return None
        seq = known[1]
        seqs.resolved_activities.add(seq)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = seq
        result: ActivityResolution = job.resolve_activity.result
        meta = seqs.activity_meta.get(seq, ("", str(seq)))
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
        known = seqs.by_event.get(link)
        if known is None:
            return None
        seqs.fired_timers.add(known[1])
        job = WorkflowActivationJob()
        job.fire_timer.seq = known[1]
        return job
    return _child_or_external_job(event, kind, seqs)


def _child_or_external_job(event: HistoryEvent, kind: str,
                           seqs: _Seqs) -> WorkflowActivationJob | None:
    known = seqs.by_event.get(linked_event_id(event) or 0)
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


def _update_job(event: HistoryEvent) -> WorkflowActivationJob:
    accepted = event.workflow_execution_update_accepted_event_attributes
    request = accepted.accepted_request
    job = WorkflowActivationJob()
    update = job.do_update
    update.id = request.meta.update_id or accepted.protocol_instance_id
    update.protocol_instance_id = accepted.protocol_instance_id
    update.name = request.input.name
    update.input.extend(request.input.args.payloads)
    for key, value in request.input.header.fields.items():
        update.headers[key].CopyFrom(value)
    update.meta.CopyFrom(request.meta)
    update.run_validator = False  # an accepted update is not validated again on replay
    return job


# -- commands and the events they record ------------------------------------------------------


def describe_command(command: WorkflowCommand) -> str:
    """A short description of a command, e.g. ``ScheduleActivity add_one #1``."""
    variant = command.WhichOneof("variant") or ""
    body: Any = getattr(command, variant) if variant else None
    if variant == "schedule_activity":
        return f"ScheduleActivity {body.activity_type} #{body.activity_id or body.seq}"
    if variant == "start_timer":
        return f"StartTimer {body.seq} ({body.start_to_fire_timeout.ToTimedelta()})"
    if variant == "cancel_timer":
        return f"CancelTimer {body.seq}"
    if variant == "request_cancel_activity":
        return f"RequestCancelActivity #{body.seq}"
    if variant == "schedule_local_activity":
        return f"ScheduleLocalActivity {body.activity_type} #{body.activity_id or body.seq}"
    if variant == "set_patch_marker":
        return f"SetPatchMarker {body.patch_id}"
    if variant == "start_child_workflow_execution":
        return f"StartChildWorkflowExecution {body.workflow_type} {body.workflow_id}"
    if variant == "signal_external_workflow_execution":
        return f"SignalExternalWorkflowExecution {body.signal_name}"
    if variant == "update_response":
        kind = body.WhichOneof("response")
        return f"UpdateResponse {kind} {body.protocol_instance_id}"
    return "".join(part.capitalize() for part in variant.split("_"))


def describe_event(event: HistoryEvent) -> str:
    """The command a command event recorded, described as :func:`describe_command` does."""
    kind = event_type_name(event)
    if kind == "ACTIVITY_TASK_SCHEDULED":
        a = event.activity_task_scheduled_event_attributes
        return f"ScheduleActivity {a.activity_type.name} #{a.activity_id}"
    if kind == "TIMER_STARTED":
        t = event.timer_started_event_attributes
        return f"StartTimer {t.timer_id} ({t.start_to_fire_timeout.ToTimedelta()})"
    if kind == "TIMER_CANCELED":
        return f"CancelTimer {event.timer_canceled_event_attributes.timer_id}"
    if kind == "ACTIVITY_TASK_CANCEL_REQUESTED":
        return "RequestCancelActivity"
    if kind == "MARKER_RECORDED":
        patch = patch_id(event)
        if patch is not None:
            return f"SetPatchMarker {patch}"
        local = local_marker_data(event)
        if local is not None:
            return (f"ScheduleLocalActivity {local.get('activity_type')} "
                    f"#{local.get('activity_id')}")
        return f"RecordMarker {event.marker_recorded_event_attributes.marker_name}"
    if kind == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
        c = event.start_child_workflow_execution_initiated_event_attributes
        return f"StartChildWorkflowExecution {c.workflow_type.name} {c.workflow_id}"
    if kind == "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED":
        s = event.signal_external_workflow_execution_initiated_event_attributes
        return f"SignalExternalWorkflowExecution {s.signal_name}"
    if kind == "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED":
        if event.request_cancel_external_workflow_execution_initiated_event_attributes \
                .child_workflow_only:
            return "CancelChildWorkflowExecution"
        return "RequestCancelExternalWorkflowExecution"
    if kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
        pid = event.workflow_execution_update_accepted_event_attributes.protocol_instance_id
        return f"UpdateResponse accepted {pid}"
    if kind == "WORKFLOW_EXECUTION_UPDATE_COMPLETED":
        done = event.workflow_execution_update_completed_event_attributes
        outcome = "completed" if done.outcome.HasField("success") else "rejected"
        return f"UpdateResponse {outcome} {done.meta.update_id}"
    command = {v: k for k, v in _EVENT_OF_COMMAND.items()}.get(kind, kind.lower())
    return "".join(part.capitalize() for part in command.split("_"))


def describe_job(job: WorkflowActivationJob) -> str:
    """A short description of an activation job, e.g. ``ResolveActivity #1 completed``."""
    variant = job.WhichOneof("variant") or ""
    body: Any = getattr(job, variant)
    if variant == "resolve_activity":
        local = " (local)" if body.is_local else ""
        return f"ResolveActivity #{body.seq} {body.result.WhichOneof('status')}{local}"
    if variant == "fire_timer":
        return f"FireTimer {body.seq}"
    if variant == "signal_workflow":
        return f"SignalWorkflow {body.signal_name}"
    if variant == "do_update":
        return f"DoUpdate {body.name}"
    if variant == "notify_has_patch":
        return f"NotifyHasPatch {body.patch_id}"
    if variant == "initialize_workflow":
        return f"InitializeWorkflow {body.workflow_type}"
    if variant in ("resolve_child_workflow_execution", "resolve_child_workflow_execution_start"):
        status = body.WhichOneof("status") or body.result.WhichOneof("status")
        return f"{''.join(p.capitalize() for p in variant.split('_'))} #{body.seq} {status}"
    return "".join(part.capitalize() for part in variant.split("_"))


def _matches(command: WorkflowCommand, event: HistoryEvent, seqs: _Seqs) -> bool:
    """Whether ``event`` is what the history records for ``command`` (Core's checks)."""
    variant = command.WhichOneof("variant") or ""
    kind = event_type_name(event)
    if _EVENT_OF_COMMAND.get(variant) != kind and not (
            variant == "update_response" and kind.startswith("WORKFLOW_EXECUTION_UPDATE_")):
        return False
    if variant == "schedule_activity":
        a = event.activity_task_scheduled_event_attributes
        c = command.schedule_activity
        return (a.activity_type.name == c.activity_type
                and a.activity_id == (c.activity_id or str(c.seq)))
    if variant == "start_timer":
        return event.timer_started_event_attributes.timer_id == str(command.start_timer.seq)
    if variant == "cancel_timer":
        return event.timer_canceled_event_attributes.timer_id == str(command.cancel_timer.seq)
    if variant == "request_cancel_activity":
        known = seqs.by_event.get(event.activity_task_cancel_requested_event_attributes
                                  .scheduled_event_id)
        return known == ("activity", command.request_cancel_activity.seq)
    if variant == "set_patch_marker":
        return patch_id(event) == command.set_patch_marker.patch_id
    if variant == "schedule_local_activity":
        data = local_marker_data(event)
        la = command.schedule_local_activity
        return data is not None and data.get("seq") == la.seq and (
            data.get("activity_type") == la.activity_type
            and data.get("activity_id") == (la.activity_id or str(la.seq)))
    if variant == "start_child_workflow_execution":
        e = event.start_child_workflow_execution_initiated_event_attributes
        c2 = command.start_child_workflow_execution
        return e.workflow_type.name == c2.workflow_type and e.workflow_id == c2.workflow_id
    if variant == "signal_external_workflow_execution":
        return (event.signal_external_workflow_execution_initiated_event_attributes.signal_name
                == command.signal_external_workflow_execution.signal_name)
    if variant == "cancel_child_workflow_execution":
        return event.request_cancel_external_workflow_execution_initiated_event_attributes \
            .child_workflow_only
    if variant == "update_response":
        return describe_command(command) == describe_event(event)
    return True


def _sent_commands(completion: WorkflowActivationCompletion, seqs: _Seqs) -> list[WorkflowCommand]:
    """The code's commands that reach the history, in the order Core sends them."""
    commands = commands_as_sent(completion)
    dropped: set[int] = set()
    cancels = {"schedule_activity": ("request_cancel_activity", "seq"),
               "start_timer": ("cancel_timer", "seq")}
    for i, command in enumerate(commands):
        variant = command.WhichOneof("variant") or ""
        if variant not in cancels:
            continue
        cancel_variant, seq_field = cancels[variant]
        seq = getattr(command, variant).seq
        for j in range(i + 1, len(commands)):
            other = commands[j]
            if (j not in dropped and other.WhichOneof("variant") == cancel_variant
                    and getattr(getattr(other, cancel_variant), seq_field) == seq):
                dropped.update((i, j))  # cancelled before it was sent: Core sends neither
                break
    sent: list[WorkflowCommand] = []
    accepted_now: set[str] = set()
    for i, command in enumerate(commands):
        variant = command.WhichOneof("variant") or ""
        if i in dropped or variant in ("cancel_signal_workflow", "request_cancel_local_activity"):
            continue
        if variant == "schedule_local_activity" and \
                command.schedule_local_activity.seq not in seqs.local_here:
            continue  # No marker yet: Core sends it once it resolves, in a later task.
        if variant == "request_cancel_activity":
            seq = command.request_cancel_activity.seq
            if (seq in seqs.resolved_activities or seqs.activity_cancel_type.get(seq)
                    == ActivityCancellationType.ABANDON):
                continue  # nothing reaches the server
        if variant == "cancel_timer" and command.cancel_timer.seq in seqs.fired_timers:
            continue
        if variant == "set_patch_marker":
            if command.set_patch_marker.patch_id in seqs.patches:
                continue
        if variant == "update_response":
            response = command.update_response
            pid = response.protocol_instance_id
            if response.WhichOneof("response") == "accepted":
                accepted_now.add(pid)
            elif pid not in seqs.accepted_updates and pid not in accepted_now:
                continue  # rejected by its validator: no event
        sent.append(command)
    return sent


def _remember(command: WorkflowCommand, event: HistoryEvent, seqs: _Seqs) -> None:
    variant = command.WhichOneof("variant")
    if variant == "schedule_activity":
        c = command.schedule_activity
        seqs.by_event[event.event_id] = ("activity", c.seq)
        seqs.activity_cancel_type[c.seq] = c.cancellation_type
        seqs.activity_meta[c.seq] = (c.activity_type, c.activity_id or str(c.seq))
    elif variant == "start_timer":
        seqs.by_event[event.event_id] = ("timer", command.start_timer.seq)
    elif variant == "start_child_workflow_execution":
        seqs.by_event[event.event_id] = ("child", command.start_child_workflow_execution.seq)
    elif variant == "signal_external_workflow_execution":
        seqs.by_event[event.event_id] = ("signal", command.signal_external_workflow_execution.seq)
    elif variant == "request_cancel_external_workflow_execution":
        seqs.by_event[event.event_id] = (
            "cancel_external", command.request_cancel_external_workflow_execution.seq)
    elif variant == "cancel_child_workflow_execution":
        seqs.by_event[event.event_id] = (
            "cancel_child", command.cancel_child_workflow_execution.child_workflow_seq)
    elif variant == "set_patch_marker":
        seqs.patches.add(command.set_patch_marker.patch_id)
    elif variant == "update_response" and command.update_response.WhichOneof(
            "response") == "accepted":
        seqs.accepted_updates.add(command.update_response.protocol_instance_id)


def _resolved_by_core(commands: Sequence[WorkflowCommand], seqs: _Seqs,
                      resolved_now: set[int]) -> list[WorkflowActivationJob]:
    """Jobs Core answers itself inside the task: an activity the code cancels without waiting
    for the cancellation resolves at once (activity_state_machine.rs). Their seqs go into
    ``resolved_now``: the cancel request itself still reaches the history."""
    jobs: list[WorkflowActivationJob] = []
    for command in commands:
        if not command.HasField("request_cancel_activity"):
            continue
        seq = command.request_cancel_activity.seq
        kind = seqs.activity_cancel_type.get(seq, ActivityCancellationType.TRY_CANCEL)
        if seq in seqs.resolved_activities or seq in resolved_now or kind == (
                ActivityCancellationType.WAIT_CANCELLATION_COMPLETED):
            continue
        resolved_now.add(seq)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = seq
        cause = Failure()
        cause.canceled_failure_info.SetInParent()
        job.resolve_activity.result.cancelled.failure.CopyFrom(_activity_failure(
            "Activity cancelled", cause, seqs.activity_meta.get(seq, ("", str(seq))),
            RetryState.RETRY_STATE_CANCEL_REQUESTED, "", 0, 0))
        jobs.append(job)
    return jobs


# -- the replay -------------------------------------------------------------------------------


async def replay_history(
    events: Sequence[HistoryEvent],
    workflow: type,
    *,
    workflow_id: str = "",
    data_converter: temporalio.converter.DataConverter | None = None,
    namespace: str = "default",
    runner: WorkflowRunner | None = None,
    deadlock_timeout: float | None = DEFAULT_DEADLOCK_TIMEOUT,
) -> ReplayReport:
    """Replay ``events`` (one run's history) with ``workflow`` (a ``@workflow.defn`` class),
    setting each recorded event beside what the code does there.

    The replay stops at the first divergence (as Temporal's does); a workflow task the code
    fails is a divergence too. Runs on the caller's loop; the workflow code runs in a helper
    thread. Raises ``ValueError`` for a history that does not start with
    WORKFLOW_EXECUTION_STARTED.
    """
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        raise ValueError("a history starts with WORKFLOW_EXECUTION_STARTED; this one does not "
                         "(pass a whole run's history, e.g. handle.fetch_history())")
    defn = temporalio.workflow._Definition.must_from_class(workflow)
    started = events[0].workflow_execution_started_event_attributes
    reg = WorkflowRegistration(
        defn=defn,
        runner=runner or UnsandboxedWorkflowRunner(),
        data_converter=data_converter or temporalio.converter.DataConverter.default,
        interceptor_classes=[],
        failure_exception_types=[],
        namespace=namespace,
        task_queue=started.task_queue.name,
        deadlock_timeout=deadlock_timeout,
    )
    rows_by_event = {
        e.event_id: ReplayRow(e.event_id, event_type_name(e), None, None, None, "")
        for e in events
    }
    _name_rows(events, rows_by_event)
    updates_by_task: dict[int, list[HistoryEvent]] = {}
    for e in events:
        if e.HasField("workflow_execution_update_accepted_event_attributes"):
            sequencing = (e.workflow_execution_update_accepted_event_attributes
                          .accepted_request_sequencing_event_id)
            updates_by_task.setdefault(sequencing, []).append(e)
    tasks, _ = _split_tasks(events)
    run_id = started.original_execution_run_id or started.first_execution_run_id
    init = initialize_job(events[0], workflow_id).initialize_workflow
    seqs = _Seqs()
    extra: dict[int, list[ReplayRow]] = {}  # rows after an event id: commands with no event
    divergence: ReplayRow | None = None
    flags: set[int] = set()
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dbosify-replay")
    instance: WorkflowInstance | None = None
    try:
        for index, task in enumerate(tasks):
            replaying = task.completed is not None
            jobs: list[WorkflowActivationJob] = []
            for e in task.command_events:
                patch = patch_id(e)
                if patch is not None:
                    job = WorkflowActivationJob()
                    job.notify_has_patch.patch_id = patch
                    jobs.append(job)
            for e in task.job_events:
                if e.event_id == 1:
                    job = WorkflowActivationJob(initialize_workflow=init)
                else:
                    built = _job_for(e, seqs)
                    if built is None:
                        continue
                    job = built
                rows_by_event[e.event_id].status = INPUT
                rows_by_event[e.event_id].command = describe_job(job)
                jobs.append(job)
            for e in updates_by_task.get(task.scheduled_id, []):
                # Core re-delivers an accepted update from its accepted event.
                update_job = _update_job(e)
                rows_by_event[e.event_id].note = (
                    f"fed as {describe_job(update_job)} in the task of event "
                    f"{task.scheduled_id}")
                jobs.append(update_job)
            if task.completed is not None:
                flags.update(task.completed.workflow_task_completed_event_attributes
                             .sdk_metadata.lang_used_flags)
            activation = WorkflowActivation(
                run_id=run_id, jobs=jobs, is_replaying=replaying,
                history_length=task.started.event_id,
                available_internal_flags=sorted(flags))
            activation.timestamp.CopyFrom(task.started.event_time)
            if instance is None:
                instance = create_instance(reg, activation, init)
            produced: list[WorkflowCommand] = []
            resolved_now: set[int] = set()
            failure: str | None = None
            seqs.local_here = {}
            for e in task.command_events:
                data = local_marker_data(e)
                if data is not None and isinstance(data.get("seq"), int):
                    seqs.local_here[data["seq"]] = (e, data)
            # Scheduled in an earlier task, resolved by a marker of this one: Core sends the
            # marker first.
            produced.extend(cmd for seq, cmd in seqs.local_scheduled.items()
                            if seq in seqs.local_here)
            delivered: set[int] = set()
            while True:
                completion = await activate(instance, activation, executor,
                                            reg.deadlock_timeout)
                if completion.WhichOneof("status") == "failed":
                    failure = completion.failed.failure.message or "workflow task failed"
                    break
                produced.extend(completion.successful.commands)
                follow = _resolved_by_core(completion.successful.commands, seqs, resolved_now)
                follow += _local_jobs(completion.successful.commands, seqs, delivered)
                if not follow:
                    break
                activation = WorkflowActivation(
                    run_id=run_id, jobs=follow, is_replaying=replaying,
                    history_length=task.started.event_id,
                    available_internal_flags=sorted(flags))
                activation.timestamp.CopyFrom(task.started.event_time)
            anchor = (task.command_events[-1].event_id if task.command_events
                      else task.completed.event_id if task.completed is not None
                      else task.started.event_id)
            if failure is not None:
                row = ReplayRow(None, None, None, None, None, DIVERGED,
                                f"the workflow task failed: {failure}")
                extra.setdefault(anchor, []).append(row)
                divergence = row
                break
            completion = WorkflowActivationCompletion(run_id=run_id)
            completion.successful.commands.extend(produced)
            sent = _sent_commands(completion, seqs)
            seqs.resolved_activities |= resolved_now
            for seq in delivered:
                seqs.local_scheduled.pop(seq, None)
            if not replaying:
                for command in sent:
                    extra.setdefault(anchor, []).append(ReplayRow(
                        None, None, None, None, describe_command(command), NEW,
                        "beyond the recorded history"))
                break
            later = next((e for t in tasks[index + 1:] for e in t.command_events), None)
            divergence = _compare(task, sent, seqs, rows_by_event, extra, later)
            if divergence is not None:
                break
    finally:
        if instance is not None:
            evict = WorkflowActivation(run_id=run_id)
            evict.jobs.add().remove_from_cache.message = "replay done"
            try:
                await asyncio.get_running_loop().run_in_executor(executor, instance.activate,
                                                                 evict)
            except Exception:  # The replay's answer stands even if the eviction complains.
                pass
        executor.shutdown(wait=False)
    rows: list[ReplayRow] = []
    seen_divergence = False
    for e in events:
        row = rows_by_event[e.event_id]
        if seen_divergence and row.status != DIVERGED:
            row.status = NOT_REPLAYED
        seen_divergence = seen_divergence or row.status == DIVERGED
        rows.append(row)
        for added in extra.get(e.event_id, []):
            seen_divergence = seen_divergence or added.status == DIVERGED
            rows.append(added)
    return ReplayReport(rows, defn.name or workflow.__name__, divergence)


def _name_rows(events: Sequence[HistoryEvent], rows: dict[int, ReplayRow]) -> None:
    names: dict[int, str | None] = {}
    for e in events:
        name = own_name(e)
        link = linked_event_id(e)
        if name is None and link is not None:
            name = names.get(link)
        names[e.event_id] = name
        rows[e.event_id].name = name


def _deprecated_patch(event: HistoryEvent) -> bool:
    """Whether ``event`` is a marker of ``workflow.deprecate_patch()`` (which Core lets code
    without the call skip; a marker of ``workflow.patched()`` it does not)."""
    if patch_id(event) is None:
        return False
    details = event.marker_recorded_event_attributes.details[PATCH_MARKER_DETAILS_KEY]
    try:
        return bool(json.loads(details.payloads[0].data).get("deprecated"))
    except (ValueError, AttributeError):
        return False


def _compare(task: _Task, sent: list[WorkflowCommand], seqs: _Seqs,
             rows: dict[int, ReplayRow], extra: dict[int, list[ReplayRow]],
             later: HistoryEvent | None) -> ReplayRow | None:
    """Match the code's commands with the task's command events; the first mismatch, if any.
    ``later`` is the first command event of the tasks after this one."""
    recorded = list(task.command_events)
    i = 0
    for command in sent:
        while i < len(recorded) and _deprecated_patch(recorded[i]) and not _matches(
                command, recorded[i], seqs):
            row = rows[recorded[i].event_id]
            row.recorded, row.status = describe_event(recorded[i]), SKIPPED
            row.note = "deprecated patch marker the code no longer asks for: Core skips it"
            i += 1
        if i >= len(recorded):
            if later is not None:
                # Core matches the command with the next command event, wherever it is.
                row = rows[later.event_id]
                row.recorded, row.command = describe_event(later), describe_command(command)
                row.status = DIVERGED
                row.note = ("the code gives a command where the history has none; the next "
                            "recorded command is this one")
                return row
            anchor = recorded[-1].event_id if recorded else (
                task.completed.event_id if task.completed is not None else 0)
            row = ReplayRow(None, None, None, None, describe_command(command), DIVERGED,
                            "the code gives a command the history has no event for")
            extra.setdefault(anchor, []).append(row)
            return row
        event = recorded[i]
        row = rows[event.event_id]
        row.recorded, row.command = describe_event(event), describe_command(command)
        if not _matches(command, event, seqs):
            row.status = DIVERGED
            row.note = "the code gives another command than the history recorded"
            return row
        row.status = MATCH
        _remember(command, event, seqs)
        i += 1
    for event in recorded[i:]:
        row = rows[event.event_id]
        row.recorded = describe_event(event)
        if _deprecated_patch(event):
            row.status = SKIPPED
            row.note = "deprecated patch marker the code no longer asks for: Core skips it"
            continue
        row.status = DIVERGED
        row.note = "the history recorded a command the code no longer gives"
        return row
    return None
