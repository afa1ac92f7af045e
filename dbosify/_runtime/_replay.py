"""Replaying a Temporal history against workflow code, event by event (DESIGN §5).

temporalio's ``Replayer`` says whether a history replays; it does not say where the code parts
ways with it. :func:`replay_history` plays Core's part instead: it turns the history's events
into the activations Core would feed the code (``InitializeWorkflow`` from the started event,
activity and timer resolutions, signals, updates, cancel requests, ``NotifyHasPatch`` from patch
markers), runs a fresh temporalio workflow instance of the code on them, and sets each command
the code gives beside the event the history recorded for it. The first command that does not
match its event is the divergence, where the ``Replayer`` raises ``NondeterminismError``.

It needs only the history (a saved ``WorkflowHistory`` JSON will do) and the workflow class.
Here are the loop over the history's workflow tasks and its report; the jobs Core builds from
events are in :mod:`dbosify._runtime._replay_jobs`, Core's checks of commands against events in
:mod:`dbosify._runtime._replay_match`, and the rows' wording in
:mod:`dbosify._runtime._replay_describe`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import temporalio.converter
import temporalio.workflow
from temporalio.api.history.v1 import HistoryEvent
from temporalio.bridge.proto.workflow_activation import WorkflowActivation, WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowInstance, WorkflowRunner

from dbosify._runtime._instance import (
    DEFAULT_DEADLOCK_TIMEOUT,
    WorkflowRegistration,
    activate,
    create_instance,
)
from dbosify._runtime._replay_describe import describe_command, describe_event, describe_job
from dbosify._runtime._replay_jobs import (
    CoreMemory,
    accepted_update_job,
    initialize_job,
    job_for,
    local_jobs,
    local_marker_data,
    resolved_by_core,
)
from dbosify._runtime._replay_match import deprecated_patch, matches, remember, sent_commands
from dbosify.history._rows import event_type_name, linked_event_id, own_name, patch_id

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
    memory = CoreMemory()
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
                    built = job_for(e, memory)
                    if built is None:
                        continue
                    job = built
                rows_by_event[e.event_id].status = INPUT
                rows_by_event[e.event_id].command = describe_job(job)
                jobs.append(job)
            for e in updates_by_task.get(task.scheduled_id, []):
                # Core re-delivers an accepted update from its accepted event.
                update_job = accepted_update_job(e)
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
            memory.local_here = {}
            for e in task.command_events:
                data = local_marker_data(e)
                if data is not None and isinstance(data.get("seq"), int):
                    memory.local_here[data["seq"]] = (e, data)
            # Scheduled in an earlier task, resolved by a marker of this one: Core sends the
            # marker first.
            produced.extend(cmd for seq, cmd in memory.local_scheduled.items()
                            if seq in memory.local_here)
            delivered: set[int] = set()
            while True:
                completion = await activate(instance, activation, executor,
                                            reg.deadlock_timeout)
                if completion.WhichOneof("status") == "failed":
                    failure = completion.failed.failure.message or "workflow task failed"
                    break
                produced.extend(completion.successful.commands)
                follow = resolved_by_core(completion.successful.commands, memory, resolved_now,
                                          produced, namespace)
                follow += local_jobs(completion.successful.commands, memory, delivered)
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
            sent = sent_commands(completion, memory)
            memory.resolved_activities |= resolved_now
            for seq in delivered:
                memory.local_scheduled.pop(seq, None)
            if not replaying:
                for command in sent:
                    extra.setdefault(anchor, []).append(ReplayRow(
                        None, None, None, None, describe_command(command), NEW,
                        "beyond the recorded history"))
                break
            later = next((e for t in tasks[index + 1:] for e in t.command_events), None)
            divergence = _compare(task, sent, memory, rows_by_event, extra, later)
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


def _compare(task: _Task, sent: list[WorkflowCommand], memory: CoreMemory,
             rows: dict[int, ReplayRow], extra: dict[int, list[ReplayRow]],
             later: HistoryEvent | None) -> ReplayRow | None:
    """Match the code's commands with the task's command events; the first mismatch, if any.
    ``later`` is the first command event of the tasks after this one."""
    recorded = list(task.command_events)
    i = 0
    for command in sent:
        while i < len(recorded) and deprecated_patch(recorded[i]) and not matches(
                command, recorded[i], memory):
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
        if not matches(command, event, memory):
            row.status = DIVERGED
            row.note = "the code gives another command than the history recorded"
            return row
        row.status = MATCH
        remember(command, event, memory)
        i += 1
    for event in recorded[i:]:
        row = rows[event.event_id]
        row.recorded = describe_event(event)
        if deprecated_patch(event):
            row.status = SKIPPED
            row.note = "deprecated patch marker the code no longer asks for: Core skips it"
            continue
        row.status = DIVERGED
        row.note = "the history recorded a command the code no longer gives"
        return row
    return None
