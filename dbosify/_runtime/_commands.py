"""Comparing the commands workflow code issues with the recorded ones (nondeterminism)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

CLOSING_COMMANDS = frozenset({
    "complete_workflow_execution", "fail_workflow_execution", "cancel_workflow_execution",
    "continue_as_new_workflow_execution",
})


def describe_command(command: WorkflowCommand) -> str:
    """A short, stable description of what a command asks for, e.g.
    ``schedule_activity(seq=1, type='charge')``."""
    kind = command.WhichOneof("variant") or "unknown"
    body: Any = getattr(command, kind, None)
    if kind == "schedule_activity":
        return f"schedule_activity(seq={body.seq}, type={body.activity_type!r})"
    if kind == "start_timer":
        return f"start_timer(seq={body.seq})"
    if kind in ("cancel_timer", "request_cancel_activity"):
        return f"{kind}(seq={body.seq})"
    if kind == "set_patch_marker":
        return f"set_patch_marker({body.patch_id!r})"
    if kind == "start_child_workflow_execution":
        return f"start_child_workflow_execution(seq={body.seq}, type={body.workflow_type!r})"
    if kind == "signal_external_workflow_execution":
        return f"signal_external_workflow_execution(seq={body.seq}, signal={body.signal_name!r})"
    if kind == "update_response":
        return f"update_response({body.protocol_instance_id!r}, {body.WhichOneof('response')})"
    return kind


def _recorded_kinds(commands: Iterable[WorkflowCommand]) -> list[str]:
    # Queries are never recorded, so they take no part in the comparison.
    return [describe_command(c) for c in commands if c.WhichOneof("variant") != "respond_to_query"]


def commands_of(completion: WorkflowActivationCompletion) -> list[WorkflowCommand]:
    """The commands of a successful completion (none for a failed one)."""
    if completion.HasField("successful"):
        return list(completion.successful.commands)
    return []


def first_difference(recorded: WorkflowActivationCompletion,
                     produced: WorkflowActivationCompletion) -> tuple[str, str] | None:
    """The first (recorded, produced) pair of command descriptions that differ, or None."""
    old = _recorded_kinds(commands_of(recorded))
    new = _recorded_kinds(commands_of(produced))
    for i in range(max(len(old), len(new))):
        a = old[i] if i < len(old) else "no command"
        b = new[i] if i < len(new) else "no command"
        if a != b:
            return a, b
    return None
