"""Whether the code's commands meet the events a history recorded for them, as Core checks on
replay: which of a task's commands reach the history at all, whether a command matches its
event, and what Core remembers of a match for the events that answer it later."""

from __future__ import annotations

import json

from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType, WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._runtime._replay_describe import EVENT_OF_COMMAND, describe_command, describe_event
from dbosify._runtime._replay_jobs import CoreMemory, local_marker_data
from dbosify.history._commands import cancelled_before_sent
from dbosify.history._events import PATCH_MARKER_DETAILS_KEY, commands_as_sent
from dbosify.history._rows import event_type_name, patch_id


def matches(command: WorkflowCommand, event: HistoryEvent, memory: CoreMemory) -> bool:
    """Whether ``event`` is what the history records for ``command`` (Core's checks)."""
    variant = command.WhichOneof("variant") or ""
    kind = event_type_name(event)
    if EVENT_OF_COMMAND.get(variant) != kind and not (
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
        known = memory.by_event.get(event.activity_task_cancel_requested_event_attributes
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


def sent_commands(completion: WorkflowActivationCompletion, memory: CoreMemory) -> list[WorkflowCommand]:
    """The code's commands that reach the history, in the order Core sends them."""
    commands = commands_as_sent(completion)
    dropped = cancelled_before_sent(commands)  # Core sends neither a command nor its cancel.
    sent: list[WorkflowCommand] = []
    accepted_now: set[str] = set()
    for i, command in enumerate(commands):
        variant = command.WhichOneof("variant") or ""
        if i in dropped or variant in ("cancel_signal_workflow", "request_cancel_local_activity"):
            continue
        if variant == "schedule_local_activity" and \
                command.schedule_local_activity.seq not in memory.local_here:
            continue  # No marker yet: Core sends it once it resolves, in a later task.
        if variant == "request_cancel_activity":
            seq = command.request_cancel_activity.seq
            if (seq in memory.resolved_activities or memory.activity_cancel_type.get(seq)
                    == ActivityCancellationType.ABANDON):
                continue  # nothing reaches the server
        if variant == "cancel_timer" and command.cancel_timer.seq in memory.fired_timers:
            continue
        if variant == "set_patch_marker":
            if command.set_patch_marker.patch_id in memory.patches:
                continue
        if variant == "update_response":
            response = command.update_response
            pid = response.protocol_instance_id
            if response.WhichOneof("response") == "accepted":
                accepted_now.add(pid)
            elif pid not in memory.accepted_updates and pid not in accepted_now:
                continue  # rejected by its validator: no event
        sent.append(command)
    return sent


def remember(command: WorkflowCommand, event: HistoryEvent, memory: CoreMemory) -> None:
    variant = command.WhichOneof("variant")
    if variant == "schedule_activity":
        c = command.schedule_activity
        memory.by_event[event.event_id] = ("activity", c.seq)
        memory.activity_cancel_type[c.seq] = c.cancellation_type
        memory.activity_meta[c.seq] = (c.activity_type, c.activity_id or str(c.seq))
    elif variant == "start_timer":
        memory.by_event[event.event_id] = ("timer", command.start_timer.seq)
    elif variant == "start_child_workflow_execution":
        memory.by_event[event.event_id] = ("child", command.start_child_workflow_execution.seq)
    elif variant == "signal_external_workflow_execution":
        memory.by_event[event.event_id] = ("signal", command.signal_external_workflow_execution.seq)
    elif variant == "request_cancel_external_workflow_execution":
        memory.by_event[event.event_id] = (
            "cancel_external", command.request_cancel_external_workflow_execution.seq)
    elif variant == "cancel_child_workflow_execution":
        memory.by_event[event.event_id] = (
            "cancel_child", command.cancel_child_workflow_execution.child_workflow_seq)
    elif variant == "set_patch_marker":
        memory.patches.add(command.set_patch_marker.patch_id)
    elif variant == "update_response" and command.update_response.WhichOneof(
            "response") == "accepted":
        memory.accepted_updates.add(command.update_response.protocol_instance_id)


def deprecated_patch(event: HistoryEvent) -> bool:
    """Whether ``event`` is a marker of ``workflow.deprecate_patch()`` (which Core lets code
    without the call skip; a marker of ``workflow.patched()`` it does not)."""
    if patch_id(event) is None:
        return False
    details = event.marker_recorded_event_attributes.details[PATCH_MARKER_DETAILS_KEY]
    try:
        return bool(json.loads(details.payloads[0].data).get("deprecated"))
    except (ValueError, AttributeError):
        return False
