"""Single Temporal history events, made from the protos a workflow instance exchanges with Core.

Everything here is a pure function of its arguments; the bookkeeping that ties events together
(event ids, which activity a resolution belongs to, ...) lives in :mod:`dbosify.history._build`.
Field for field, each event is what Temporal's server writes for the command Core sends it
(Core's ``*_cmd_to_api`` conversions in ``temporalio/bridge/sdk-core/crates/protos``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from google.protobuf.message import Message
from temporalio.api.common.v1 import (
    ActivityType,
    Header,
    Memo,
    Payload,
    Payloads,
    RetryPolicy,
    WorkflowType,
)
from temporalio.api.enums.v1 import (
    ContinueAsNewInitiator,
    EventType,
    RetryState,
    TaskQueueKind,
)
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import (
    ActivityTaskScheduledEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    StartChildWorkflowExecutionInitiatedEventAttributes,
    WorkflowExecutionCanceledEventAttributes,
    WorkflowExecutionCompletedEventAttributes,
    WorkflowExecutionContinuedAsNewEventAttributes,
    WorkflowExecutionFailedEventAttributes,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.bridge.proto.activity_result import ActivityResolution
from temporalio.bridge.proto.workflow_commands import (
    ContinueAsNewWorkflowExecution,
    ScheduleActivity,
    ScheduleLocalActivity,
    StartChildWorkflowExecution,
    WorkflowCommand,
)
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

PATCH_MARKER_NAME = "core_patch"
"""Marker name Core gives the marker a ``workflow.patched()`` call records."""

PATCH_MARKER_DETAILS_KEY = "patch-data"
"""Key of the marker details Core reads a patch id from (``PATCHED_MARKER_DETAILS_KEY``)."""

TERMINAL_COMMANDS = frozenset(
    {
        "complete_workflow_execution",
        "fail_workflow_execution",
        "cancel_workflow_execution",
        "continue_as_new_workflow_execution",
    }
)
"""Command variants that close the run."""


def _event_kinds() -> dict[str, tuple[str, EventType.ValueType]]:
    # The attribute oneof of HistoryEvent names each field after its event type, so the mapping
    # follows the protos instead of a hand-kept table; a renamed field fails here, at import.
    kinds: dict[str, tuple[str, EventType.ValueType]] = {}
    oneof = HistoryEvent.DESCRIPTOR.oneofs_by_name["attributes"]
    for fd in oneof.fields:
        suffix = "_event_attributes"
        if not fd.name.endswith(suffix) or fd.message_type is None:
            continue
        type_name = "EVENT_TYPE_" + fd.name[: -len(suffix)].upper()
        if type_name in EventType.keys():
            kinds[fd.message_type.full_name] = (fd.name, EventType.Value(type_name))
    return kinds


_EVENT_KINDS = _event_kinds()


def new_event(event_id: int, time_ms: int, attributes: Message) -> HistoryEvent:
    """A history event carrying ``attributes``, whose type follows from the attributes' type."""
    field_name, event_type = _EVENT_KINDS[attributes.DESCRIPTOR.full_name]
    event = HistoryEvent(event_id=event_id, event_type=event_type)
    event.event_time.FromMilliseconds(time_ms)
    getattr(event, field_name).CopyFrom(attributes)
    return event


def copy_set_fields(source: Message, target: Message, names: Iterable[str]) -> None:
    """Copy each message field of ``names`` that ``source`` sets onto the same-named field of
    ``target``; an unset field stays unset there (a copied default would read as set)."""
    for name in names:
        if source.HasField(name):
            getattr(target, name).CopyFrom(getattr(source, name))


def attributes_of(event: HistoryEvent) -> Message | None:
    """The attributes message of ``event`` (whichever oneof field is set)."""
    field_name = event.WhichOneof("attributes")
    if field_name is None:
        return None
    attrs: Message = getattr(event, field_name)
    return attrs


def task_queue(name: str) -> TaskQueue:
    """A normal (non-sticky) task queue, as the server records it."""
    return TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL)


def payloads(items: Iterable[Payload]) -> Payloads:
    """A ``Payloads`` holding ``items``."""
    return Payloads(payloads=list(items))


def header(fields: Mapping[str, Payload]) -> Header:
    """A ``Header`` holding ``fields`` (Core passes headers around as plain maps)."""
    return Header(fields=dict(fields))


def is_terminal(command: WorkflowCommand) -> bool:
    """Whether ``command`` closes the run (complete, fail, cancel or continue-as-new)."""
    return command.WhichOneof("variant") in TERMINAL_COMMANDS


def commands_as_sent(completion: WorkflowActivationCompletion) -> list[WorkflowCommand]:
    """The commands of a successful completion in the order Core sends them to the server.

    Query answers are not commands of the history. Core moves every other command ahead of the
    first command that closes the run and drops any later closing command (its internal flag 3,
    ``MoveTerminalCommands``, which the histories built here declare): a signal or update answer
    issued after ``return`` still reaches the server.
    """
    if completion.WhichOneof("status") != "successful":
        return []
    ordinary: list[WorkflowCommand] = []
    terminal: WorkflowCommand | None = None
    for command in completion.successful.commands:
        variant = command.WhichOneof("variant")
        if variant is None or variant == "respond_to_query":
            continue
        if variant in TERMINAL_COMMANDS:
            if terminal is None:
                terminal = command
            continue
        ordinary.append(command)
    if terminal is not None:
        ordinary.append(terminal)
    return ordinary


def activity_scheduled(
    cmd: ScheduleActivity, *, default_task_queue: str, workflow_task_completed_event_id: int
) -> ActivityTaskScheduledEventAttributes:
    """ACTIVITY_TASK_SCHEDULED for a ``ScheduleActivity`` command.

    The activity id is the command's own: the Python SDK sets it to ``str(seq)`` unless the
    workflow chose one, and Core compares it on replay (internal flag 1).
    """
    attrs = ActivityTaskScheduledEventAttributes(
        activity_id=cmd.activity_id or str(cmd.seq),
        activity_type=ActivityType(name=cmd.activity_type),
        task_queue=task_queue(cmd.task_queue or default_task_queue),
        header=header(cmd.headers),
        input=payloads(cmd.arguments),
        workflow_task_completed_event_id=workflow_task_completed_event_id,
    )
    # The history shows the options that applied: the server fills in what the command left
    # unset (missing timeouts from schedule-to-close, the default retry policy) before it
    # writes this event.
    if cmd.HasField("schedule_to_close_timeout"):
        attrs.schedule_to_close_timeout.CopyFrom(cmd.schedule_to_close_timeout)
    for name in ("schedule_to_start_timeout", "start_to_close_timeout"):
        if cmd.HasField(name):
            getattr(attrs, name).CopyFrom(getattr(cmd, name))
        elif cmd.HasField("schedule_to_close_timeout"):
            getattr(attrs, name).CopyFrom(cmd.schedule_to_close_timeout)
    if cmd.HasField("heartbeat_timeout"):
        attrs.heartbeat_timeout.CopyFrom(cmd.heartbeat_timeout)
    attrs.retry_policy.CopyFrom(with_retry_defaults(cmd.retry_policy))
    if cmd.HasField("priority"):
        attrs.priority.CopyFrom(cmd.priority)
    return attrs


def with_retry_defaults(policy: RetryPolicy) -> RetryPolicy:
    """``policy`` with Temporal's defaults for what it leaves unset, as the server records it.

    Initial interval 1 s, backoff coefficient 2.0, maximum interval 100 times the initial one;
    maximum attempts 0 means unlimited.
    """
    filled = RetryPolicy()
    filled.CopyFrom(policy)
    if not filled.HasField("initial_interval") or filled.initial_interval.ToNanoseconds() == 0:
        filled.initial_interval.FromSeconds(1)
    if filled.backoff_coefficient == 0:
        filled.backoff_coefficient = 2.0
    if not filled.HasField("maximum_interval") or filled.maximum_interval.ToNanoseconds() == 0:
        filled.maximum_interval.FromNanoseconds(100 * filled.initial_interval.ToNanoseconds())
    return filled


def patch_marker(
    patch_id: str, deprecated: bool, *, workflow_task_completed_event_id: int
) -> MarkerRecordedEventAttributes:
    """MARKER_RECORDED for a ``SetPatchMarker`` command, byte for byte as Core encodes it.

    Core writes ``{"patch-data": [json {"id": ..., "deprecated": ...}]}``; on replay it reads the
    id back from that key and sends ``NotifyHasPatch`` before the workflow code runs.
    """
    data = json.dumps(
        {"id": patch_id, "deprecated": deprecated}, separators=(",", ":"), ensure_ascii=False
    )
    details = {
        PATCH_MARKER_DETAILS_KEY: Payloads(
            payloads=[Payload(metadata={"encoding": b"json/plain"}, data=data.encode("utf-8"))]
        )
    }
    return MarkerRecordedEventAttributes(
        marker_name=PATCH_MARKER_NAME,
        details=details,
        workflow_task_completed_event_id=workflow_task_completed_event_id,
    )


LOCAL_ACTIVITY_MARKER_NAME = "core_local_activity"
"""Marker name Core gives the marker that records a local activity's outcome."""


def _seconds_nanos(ms: int | None) -> dict[str, int] | None:
    # serde's form of a prost Timestamp or Duration, as Core writes it in marker data.
    if ms is None:
        return None
    return {"seconds": ms // 1000, "nanos": (ms % 1000) * 1_000_000}


def local_activity_marker(
    cmd: ScheduleLocalActivity,
    resolution: ActivityResolution,
    *,
    attempt: int,
    original_schedule_ms: int,
    complete_ms: int | None,
    activation_index: int,
    backoff_failure: Failure | None,
    workflow_task_completed_event_id: int,
) -> MarkerRecordedEventAttributes:
    """MARKER_RECORDED for a local activity's resolution, as Core encodes it.

    ``details["data"]`` holds Core's ``LocalActivityMarkerData`` as JSON, ``details["result"]``
    the result of a completed activity; the failure (Core records it unwrapped: a timeout or
    cancellation without the "Local Activity ..." wrapper the workflow saw) is the marker's own.
    On replay Core resolves the activity from this marker and does not run it.
    """
    status = resolution.WhichOneof("status")
    backoff_ms: int | None = None
    failure: Failure | None = None
    if status == "backoff":
        backoff_ms = int(resolution.backoff.backoff_duration.ToMilliseconds())
        attempt = resolution.backoff.attempt - 1
        failure = backoff_failure
    elif status in ("failed", "cancelled"):
        failure = getattr(resolution, status).failure
        if failure.HasField("activity_failure_info") and failure.HasField("cause"):
            failure = failure.cause
    data = {
        "seq": cmd.seq,
        "attempt": attempt,
        "activity_id": cmd.activity_id,
        "activity_type": cmd.activity_type,
        "complete_time": _seconds_nanos(complete_ms),
        "backoff": _seconds_nanos(backoff_ms),
        "original_schedule_time": _seconds_nanos(original_schedule_ms),
        "activation_index": activation_index,
    }
    details = {
        "data": Payloads(payloads=[Payload(
            metadata={"encoding": b"json/plain"},
            data=json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))])
    }
    if status == "completed" and resolution.completed.HasField("result"):
        details["result"] = Payloads(payloads=[resolution.completed.result])
    attrs = MarkerRecordedEventAttributes(
        marker_name=LOCAL_ACTIVITY_MARKER_NAME,
        details=details,
        workflow_task_completed_event_id=workflow_task_completed_event_id,
    )
    if failure is not None:
        attrs.failure.CopyFrom(failure)
    return attrs


def child_initiated(
    cmd: StartChildWorkflowExecution,
    *,
    default_namespace: str,
    default_task_queue: str,
    workflow_task_completed_event_id: int,
) -> StartChildWorkflowExecutionInitiatedEventAttributes:
    """START_CHILD_WORKFLOW_EXECUTION_INITIATED for a ``StartChildWorkflowExecution`` command."""
    attrs = StartChildWorkflowExecutionInitiatedEventAttributes(
        namespace=cmd.namespace or default_namespace,
        workflow_id=cmd.workflow_id,
        workflow_type=WorkflowType(name=cmd.workflow_type),
        task_queue=task_queue(cmd.task_queue or default_task_queue),
        input=payloads(cmd.input),
        # Both enums share their numbering with the API's ParentClosePolicy / reuse policy.
        parent_close_policy=cmd.parent_close_policy,  # type: ignore[arg-type]
        workflow_task_completed_event_id=workflow_task_completed_event_id,
        workflow_id_reuse_policy=cmd.workflow_id_reuse_policy,
        cron_schedule=cmd.cron_schedule,
        header=header(cmd.headers),
        memo=Memo(fields=dict(cmd.memo)),
    )
    copy_set_fields(cmd, attrs, (
        "workflow_execution_timeout",
        "workflow_run_timeout",
        "workflow_task_timeout",
        "retry_policy",
        "search_attributes",
        "priority",
        "versioning_override",
    ))
    return attrs


def continued_as_new(
    cmd: ContinueAsNewWorkflowExecution,
    *,
    new_execution_run_id: str,
    workflow_task_completed_event_id: int,
) -> WorkflowExecutionContinuedAsNewEventAttributes:
    """WORKFLOW_EXECUTION_CONTINUED_AS_NEW for a ``ContinueAsNewWorkflowExecution`` command.

    Fields the workflow left empty (type, task queue, timeouts, memo) stay empty here;
    :func:`dbosify.history.build_history` fills them from the run, as the server does.
    """
    attrs = WorkflowExecutionContinuedAsNewEventAttributes(
        new_execution_run_id=new_execution_run_id,
        workflow_type=WorkflowType(name=cmd.workflow_type),
        task_queue=task_queue(cmd.task_queue),
        input=payloads(cmd.arguments),
        workflow_task_completed_event_id=workflow_task_completed_event_id,
        initiator=ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW,
    )
    copy_set_fields(cmd, attrs, (
        "workflow_run_timeout",
        "workflow_task_timeout",
        "backoff_start_interval",
        "search_attributes",
    ))
    if cmd.headers:
        attrs.header.CopyFrom(header(cmd.headers))
    if cmd.memo:
        attrs.memo.CopyFrom(Memo(fields=dict(cmd.memo)))
    return attrs


def close_event_from_completion(
    completion: WorkflowActivationCompletion,
    *,
    time_ms: int,
    new_execution_run_id: str | None = None,
    workflow_task_completed_event_id: int = 0,
    retry_state: RetryState.ValueType | None = None,
) -> HistoryEvent | None:
    """The event that closes the run, if ``completion`` closes it; else ``None``.

    WORKFLOW_EXECUTION_COMPLETED (with the result), _FAILED (with the failure), _CANCELED or
    _CONTINUED_AS_NEW (with ``new_execution_run_id`` and the new run's attributes), for the first
    closing command in the order Core sends commands. The event's id is 0: the engine stores
    it with the run and :func:`dbosify.history.build_history` numbers it when it builds the
    history. ``new_execution_run_id`` is the next run's id for continue-as-new, and for a failure
    that the run's retry policy retries (it then also goes on the FAILED event).
    ``retry_state`` goes on a FAILED event; by default RETRY_STATE_IN_PROGRESS when a new run
    follows, else RETRY_STATE_RETRY_POLICY_NOT_SET.
    """
    commands = commands_as_sent(completion)
    if not commands or not is_terminal(commands[-1]):
        return None
    return close_event_for_command(
        commands[-1],
        time_ms=time_ms,
        new_execution_run_id=new_execution_run_id,
        workflow_task_completed_event_id=workflow_task_completed_event_id,
        retry_state=retry_state,
    )


def close_event_for_command(
    command: WorkflowCommand,
    *,
    time_ms: int,
    new_execution_run_id: str | None = None,
    workflow_task_completed_event_id: int = 0,
    retry_state: RetryState.ValueType | None = None,
) -> HistoryEvent:
    """The close event for one closing command (see :func:`close_event_from_completion`)."""
    variant = command.WhichOneof("variant")
    wft = workflow_task_completed_event_id
    attrs: Message
    if variant == "complete_workflow_execution":
        done = WorkflowExecutionCompletedEventAttributes(
            workflow_task_completed_event_id=wft,
            new_execution_run_id=new_execution_run_id or "",
        )
        if command.complete_workflow_execution.HasField("result"):
            done.result.CopyFrom(payloads([command.complete_workflow_execution.result]))
        attrs = done
    elif variant == "fail_workflow_execution":
        if retry_state is None:
            retry_state = (
                RetryState.RETRY_STATE_IN_PROGRESS
                if new_execution_run_id
                else RetryState.RETRY_STATE_RETRY_POLICY_NOT_SET
            )
        attrs = WorkflowExecutionFailedEventAttributes(
            failure=command.fail_workflow_execution.failure,
            retry_state=retry_state,
            workflow_task_completed_event_id=wft,
            new_execution_run_id=new_execution_run_id or "",
        )
    elif variant == "cancel_workflow_execution":
        canceled = WorkflowExecutionCanceledEventAttributes(workflow_task_completed_event_id=wft)
        if command.cancel_workflow_execution.HasField("details"):
            canceled.details.CopyFrom(command.cancel_workflow_execution.details)
        attrs = canceled
    elif variant == "continue_as_new_workflow_execution":
        attrs = continued_as_new(
            command.continue_as_new_workflow_execution,
            new_execution_run_id=new_execution_run_id or "",
            workflow_task_completed_event_id=wft,
        )
    else:
        raise ValueError(f"{variant} does not close a workflow run")
    return new_event(0, time_ms, attrs)
