"""How a replay names what it sets side by side: the code's commands, the commands a history's
events recorded, and the jobs fed to the code, described alike so that a match reads the same
on both sides (e.g. ``ScheduleActivity add_one #1``)."""

from __future__ import annotations

from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand

from dbosify._runtime._replay_jobs import local_marker_data
from dbosify.history._rows import event_type_name, patch_id

# The event that records each command variant: the one a command must meet on replay, and the
# command an event is named after.
EVENT_OF_COMMAND = {
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
    command = {v: k for k, v in EVENT_OF_COMMAND.items()}.get(kind, kind.lower())
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
