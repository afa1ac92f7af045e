"""Events written for the commands of a completed workflow task.

The server appends one event per command right after WORKFLOW_TASK_COMPLETED, in the order Core
sent the commands; Core matches them one by one against the code's commands on replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import Header, Payloads, WorkflowExecution
from temporalio.api.history.v1 import (
    ActivityTaskCancelRequestedEventAttributes,
    RequestCancelExternalWorkflowExecutionInitiatedEventAttributes,
    SignalExternalWorkflowExecutionInitiatedEventAttributes,
    TimerCanceledEventAttributes,
    TimerStartedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionUpdateAcceptedEventAttributes,
    WorkflowExecutionUpdateCompletedEventAttributes,
    WorkflowPropertiesModifiedEventAttributes,
)
from temporalio.api.sdk.v1 import UserMetadata
from temporalio.api.update.v1 import Input, Meta, Outcome, Request
from temporalio.bridge.proto.child_workflow import ChildWorkflowCancellationType
from temporalio.bridge.proto.workflow_commands import (
    ActivityCancellationType,
    SignalExternalWorkflowExecution,
    WorkflowCommand,
)

from dbosify.history import _events
from dbosify.history._state import Activity, Child, External, Timer

if TYPE_CHECKING:
    from dbosify.history._build import HistoryBuilder

# (command that creates something, command that cancels it, the cancel's field naming it)
_CANCELLABLE = {
    "schedule_activity": ("request_cancel_activity", "seq"),
    "start_timer": ("cancel_timer", "seq"),
    "start_child_workflow_execution": ("cancel_child_workflow_execution", "child_workflow_seq"),
    "signal_external_workflow_execution": ("cancel_signal_workflow", "seq"),
}


def cancelled_before_sent(commands: Sequence[WorkflowCommand]) -> set[int]:
    """Indexes of commands Core never sends: a command cancelled in the task that issued it.

    Core drops both the command and its cancellation (the state machine ends before the server
    ever saw it), so neither is in the history.
    """
    dropped: set[int] = set()
    for i, command in enumerate(commands):
        variant = command.WhichOneof("variant")
        if variant not in _CANCELLABLE:
            continue
        cancel_variant, seq_field = _CANCELLABLE[variant]
        seq = getattr(command, variant).seq
        for j in range(i + 1, len(commands)):
            other = commands[j]
            if (
                j not in dropped
                and other.WhichOneof("variant") == cancel_variant
                and getattr(getattr(other, cancel_variant), seq_field) == seq
            ):
                dropped.update((i, j))
                break
    return dropped


def write_commands(
    builder: HistoryBuilder, commands: Sequence[WorkflowCommand], wft_scheduled_id: int
) -> None:
    """Write the events of ``commands``, completed by the task scheduled at ``wft_scheduled_id``."""
    dropped = cancelled_before_sent(commands)
    for i, command in enumerate(commands):
        if i not in dropped:
            _write_command(builder, command, wft_scheduled_id)


def _write_command(
    builder: HistoryBuilder, command: WorkflowCommand, wft_scheduled_id: int
) -> None:
    wft = builder.wft_completed_id
    metadata = command.user_metadata if command.HasField("user_metadata") else None
    variant = command.WhichOneof("variant")
    if variant == "schedule_activity":
        cmd = command.schedule_activity
        attrs = _events.activity_scheduled(
            cmd, default_task_queue=builder.task_queue, workflow_task_completed_event_id=wft
        )
        builder.activities[cmd.seq] = Activity(
            scheduled_event_id=builder.add(attrs, user_metadata=metadata),
            cancellation_type=cmd.cancellation_type,
        )
    elif variant == "start_timer":
        st = command.start_timer
        timer_id = str(st.seq)
        started = TimerStartedEventAttributes(
            timer_id=timer_id,
            start_to_fire_timeout=st.start_to_fire_timeout,
            workflow_task_completed_event_id=wft,
        )
        builder.timers[st.seq] = Timer(timer_id, builder.add(started, user_metadata=metadata))
    elif variant == "cancel_timer":
        timer = builder.timers.get(command.cancel_timer.seq)
        if timer is not None and not timer.done:  # Core ignores cancelling a fired timer
            timer.done = True
            builder.add(
                TimerCanceledEventAttributes(
                    timer_id=timer.timer_id,
                    started_event_id=timer.started_event_id,
                    workflow_task_completed_event_id=wft,
                    identity=builder.identity,
                )
            )
    elif variant == "request_cancel_activity":
        _cancel_activity(builder, builder.activities.get(command.request_cancel_activity.seq))
    elif variant == "set_patch_marker":
        patch = command.set_patch_marker
        if patch.patch_id not in builder.patches:  # Core records each patch once per run
            builder.patches.add(patch.patch_id)
            builder.add(
                _events.patch_marker(
                    patch.patch_id, patch.deprecated, workflow_task_completed_event_id=wft
                ),
                user_metadata=metadata,
            )
    elif variant == "upsert_workflow_search_attributes":
        upsert = command.upsert_workflow_search_attributes.search_attributes
        builder.search_attributes.update(upsert.indexed_fields)
        builder.add(
            UpsertWorkflowSearchAttributesEventAttributes(
                workflow_task_completed_event_id=wft, search_attributes=upsert
            ),
            user_metadata=metadata,
        )
    elif variant == "modify_workflow_properties":
        memo = command.modify_workflow_properties.upserted_memo
        builder.memo.update(memo.fields)
        builder.add(
            WorkflowPropertiesModifiedEventAttributes(
                workflow_task_completed_event_id=wft, upserted_memo=memo
            ),
            user_metadata=metadata,
        )
    elif variant == "start_child_workflow_execution":
        sc = command.start_child_workflow_execution
        initiated = _events.child_initiated(
            sc,
            default_namespace=builder.namespace,
            default_task_queue=builder.task_queue,
            workflow_task_completed_event_id=wft,
        )
        builder.children[sc.seq] = Child(
            namespace=initiated.namespace,
            workflow_id=sc.workflow_id,
            workflow_type=sc.workflow_type,
            initiated_event_id=builder.add(initiated, user_metadata=metadata),
            workflow_task_completed_event_id=wft,
            cancellation_type=sc.cancellation_type,
        )
    elif variant == "cancel_child_workflow_execution":
        cc = command.cancel_child_workflow_execution
        _cancel_child(builder, builder.children.get(cc.child_workflow_seq), cc.reason)
    elif variant == "signal_external_workflow_execution":
        _signal_external(builder, command.signal_external_workflow_execution, metadata)
    elif variant == "request_cancel_external_workflow_execution":
        rc = command.request_cancel_external_workflow_execution
        execution = WorkflowExecution(
            workflow_id=rc.workflow_execution.workflow_id, run_id=rc.workflow_execution.run_id
        )
        namespace = rc.workflow_execution.namespace or builder.namespace
        initiated_id = builder.add(
            RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(
                workflow_task_completed_event_id=wft,
                namespace=namespace,
                workflow_execution=execution,
                # Core's own wording (workflow_machines.rs), which the target's event shows.
                reason=(
                    f"Cancel requested by workflow with run id {builder.run_id} "
                    f"with reason: {rc.reason}"
                ),
            ),
            user_metadata=metadata,
        )
        builder.cancels[rc.seq] = External(namespace, execution, initiated_id, wft)
    elif variant == "update_response":
        _update_response(builder, command, wft_scheduled_id)
    elif variant == "schedule_local_activity":
        # Only a local activity resolved in this task is sent (HistoryBuilder.flush): as the
        # marker of its outcome, where the workflow scheduled it.
        marker = builder.local_markers.pop(command.schedule_local_activity.seq, None)
        if marker is not None:
            marker.workflow_task_completed_event_id = wft
            builder.add(marker, user_metadata=metadata)
    elif variant in _events.TERMINAL_COMMANDS:
        builder.derived_close = _events.close_event_for_command(
            command, time_ms=builder.time_ms, workflow_task_completed_event_id=wft
        )
    # cancel_signal_workflow: once sent, Core lets the signal go through (and one cancelled
    # before it was sent is dropped above). request_cancel_local_activity never reaches the
    # server. Nexus operations are not supported by dbosify: no events.


def _cancel_activity(builder: HistoryBuilder, activity: Activity | None) -> None:
    if activity is None or activity.resolved or activity.cancel_requested:
        return  # Core ignores cancelling a finished activity
    activity.cancel_requested = True
    if activity.cancellation_type == ActivityCancellationType.ABANDON:
        return  # abandoning sends nothing to the server
    activity.cancel_requested_event_id = builder.add(
        ActivityTaskCancelRequestedEventAttributes(
            scheduled_event_id=activity.scheduled_event_id,
            workflow_task_completed_event_id=builder.wft_completed_id,
        )
    )


def _cancel_child(builder: HistoryBuilder, child: Child | None, reason: str) -> None:
    if child is None or child.resolved or child.cancel_requested:
        return
    child.cancel_requested = True
    if child.cancellation_type == ChildWorkflowCancellationType.ABANDON:
        return
    # Core cancels a started child with a request-cancel-external command of its own.
    child.cancel_initiated_event_id = builder.add(
        RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(
            workflow_task_completed_event_id=builder.wft_completed_id,
            namespace=child.namespace,
            workflow_execution=child.execution(),
            child_workflow_only=True,
            reason=reason,
        )
    )
    builder.child_cancels_sent.append(child)


def _signal_external(
    builder: HistoryBuilder,
    se: SignalExternalWorkflowExecution,
    metadata: UserMetadata | None,
) -> None:
    if se.WhichOneof("target") == "child_workflow_id":
        namespace = builder.namespace
        execution = WorkflowExecution(workflow_id=se.child_workflow_id)
        child_only = True
    else:
        namespace = se.workflow_execution.namespace or builder.namespace
        execution = WorkflowExecution(
            workflow_id=se.workflow_execution.workflow_id, run_id=se.workflow_execution.run_id
        )
        child_only = False
    attrs = SignalExternalWorkflowExecutionInitiatedEventAttributes(
        workflow_task_completed_event_id=builder.wft_completed_id,
        namespace=namespace,
        workflow_execution=execution,
        signal_name=se.signal_name,
        input=_events.payloads(se.args),
        child_workflow_only=child_only,
    )
    if se.headers:
        attrs.header.CopyFrom(Header(fields=dict(se.headers)))
    initiated_id = builder.add(attrs, user_metadata=metadata)
    builder.signals[se.seq] = External(namespace, execution, initiated_id, builder.wft_completed_id)


def _update_response(
    builder: HistoryBuilder, command: WorkflowCommand, wft_scheduled_id: int
) -> None:
    response = command.update_response
    pid = response.protocol_instance_id
    kind = response.WhichOneof("response")
    job = builder.update_requests.get(pid)
    if kind == "accepted":
        if job is None:
            raise ValueError(f"update {pid!r} accepted but its DoUpdate job is not recorded")
        do_update = job.do_update
        meta = Meta()
        if do_update.HasField("meta"):
            meta.CopyFrom(do_update.meta)
        else:
            meta.update_id = do_update.id
        request = Request(
            meta=meta,
            input=Input(
                header=Header(fields=dict(do_update.headers)),
                name=do_update.name,
                args=Payloads(payloads=list(do_update.input)),
            ),
        )
        # The sequencing event is the scheduled event of the task that delivered the request,
        # as Temporal's server numbers it; Core delivers the update again at that point.
        builder.accepted_updates[pid] = builder.add(
            WorkflowExecutionUpdateAcceptedEventAttributes(
                protocol_instance_id=pid,
                accepted_request_message_id=f"{pid}/request",
                accepted_request_sequencing_event_id=wft_scheduled_id,
                accepted_request=request,
            )
        )
        return
    accepted_id = builder.accepted_updates.get(pid)
    if accepted_id is None:
        return  # rejected by its validator: a rejected update is not history
    outcome = Outcome()
    if kind == "completed":
        outcome.success.CopyFrom(Payloads(payloads=[response.completed]))
    elif kind == "rejected":
        outcome.failure.CopyFrom(response.rejected)
    meta = Meta(update_id=pid)
    if job is not None and job.do_update.HasField("meta"):
        meta.CopyFrom(job.do_update.meta)
    builder.add(
        WorkflowExecutionUpdateCompletedEventAttributes(
            meta=meta, accepted_event_id=accepted_id, outcome=outcome
        )
    )
