"""A run's Temporal history, rebuilt from its records (DESIGN §5, §9.4).

dbosify plays Temporal's server and Core, so the history it shows must be the one they would have
written for the same run: the same events, in the same order, pointing at each other the same way.
Then ``fetch_history()``, ``WorkflowHistory`` JSON and temporalio's own ``Replayer`` work on it,
and the ``Replayer`` detects changed workflow code exactly as it would for a history from a
Temporal cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import temporalio
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from temporalio.api.common.v1 import (
    Memo,
    Payload,
    SearchAttributes,
    WorkerVersionStamp,
    WorkflowExecution,
)
from temporalio.api.enums.v1 import (
    ContinueAsNewInitiator,
    VersioningBehavior,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import (
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
    WorkflowTaskFailedEventAttributes,
    WorkflowTaskScheduledEventAttributes,
    WorkflowTaskStartedEventAttributes,
)
from temporalio.api.sdk.v1 import UserMetadata, WorkflowTaskCompletedMetadata
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.bridge.proto.workflow_activation import InitializeWorkflow, WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType, WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._records import DEFAULT_WORKFLOW_TASK_TIMEOUT_S, WorkflowTask
from dbosify.history import _commands, _events, _jobs
from dbosify.history._state import Activity, Child, External, Timer

CORE_USED_FLAGS = (1, 3)
"""Core internal flags the histories declare on their first WORKFLOW_TASK_COMPLETED event.

1 (``IdAndTypeDeterminismChecks``) makes the ``Replayer`` compare activity and child types and
ids with the code's commands; 3 (``MoveTerminalCommands``) is the command order the events follow
(see :func:`dbosify.history._events.commands_as_sent`). Flag 2 is left out on purpose: with it,
Core expects a ``TemporalChangeVersion`` search-attribute upsert after every patch marker.
"""

SDK_NAME = "temporal-python"


_WFT_COMPLETED_FIELD = "workflow_task_completed_event_id"

# Jobs that never reach a history: queries and evictions are not events of the run.
_UNRECORDED_JOBS = frozenset({"query_workflow", "remove_from_cache"})


@dataclass
class _OpenTask:
    """A workflow task whose scheduled/started events are written but whose outcome is not yet.

    Its outcome is written only once no further activation can join it: Core answers some jobs
    (an activity the workflow cancelled, ...) itself and feeds them to the workflow inside the
    same workflow task, so the commands of those activations belong to this task too.
    """

    time_ms: int
    attempt: int
    transient: bool
    job_keys: list[bytes]
    history_size_bytes: int
    suggest_continue_as_new: bool
    completions: list[WorkflowActivationCompletion | None] = field(default_factory=list)
    tasks: list[WorkflowTask] = field(default_factory=list)
    """The activations of ``completions``, in the same order."""
    identity: str = ""
    scheduled_event_id: int = 0
    started_event_id: int = 0


class HistoryBuilder:
    """Walks a run's workflow tasks in order and writes the events they imply.

    One instance builds one history; :func:`build_history` is the way to use it.
    """

    def __init__(
        self,
        *,
        run_id: str,
        start_request: StartWorkflowExecutionRequest,
        identity: str,
        close_event: HistoryEvent | None,
    ) -> None:
        self.events: list[HistoryEvent] = []
        self.run_id = run_id
        self.start_request = start_request
        self.namespace = start_request.namespace
        self.task_queue = start_request.task_queue.name
        self.identity = identity
        self.time_ms = 0
        self.wft_completed_id = 0
        self.activities: dict[int, Activity] = {}
        self.timers: dict[int, Timer] = {}
        self.children: dict[int, Child] = {}
        self.signals: dict[int, External] = {}
        self.cancels: dict[int, External] = {}
        self.update_requests: dict[str, WorkflowActivationJob] = {}
        self.accepted_updates: dict[str, int] = {}
        self.patches: set[str] = set()
        self.child_cancels_sent: list[Child] = []
        self.search_attributes: dict[str, Payload] = dict(
            start_request.search_attributes.indexed_fields
        )
        self.memo: dict[str, Payload] = dict(start_request.memo.fields)
        self.derived_close: HistoryEvent | None = None
        self._given_close = close_event
        self._open: _OpenTask | None = None
        self._failed_keys: list[bytes] | None = None
        self._failure_streak = 0
        self._flags_written = False
        self.build_id: str | None = None
        # Local activities scheduled in an earlier workflow task and not resolved yet (their
        # command, and when it was issued); markers of those resolved in the open task.
        self.local_unresolved: dict[int, tuple[WorkflowCommand, int]] = {}
        self.local_markers: dict[int, MarkerRecordedEventAttributes] = {}

    # -- writing events -------------------------------------------------------------------------

    def add(
        self,
        attributes: Message,
        *,
        time_ms: int | None = None,
        user_metadata: UserMetadata | None = None,
    ) -> int:
        """Append an event; returns its id. Times never go backwards."""
        if time_ms is not None and time_ms > self.time_ms:
            self.time_ms = time_ms
        event = _events.new_event(len(self.events) + 1, self.time_ms, attributes)
        if user_metadata is not None:
            event.user_metadata.CopyFrom(user_metadata)
        self.events.append(event)
        return event.event_id

    # -- the run --------------------------------------------------------------------------------

    def start(self, attributes: WorkflowExecutionStartedEventAttributes, time_ms: int) -> None:
        """Write WORKFLOW_EXECUTION_STARTED."""
        metadata = (
            self.start_request.user_metadata
            if self.start_request.HasField("user_metadata")
            else None
        )
        self.add(attributes, time_ms=time_ms, user_metadata=metadata)

    def task(self, task: WorkflowTask, completion: WorkflowActivationCompletion | None,
             identity: str = "") -> None:
        """Write the events of one recorded activation and of the completion that answered it
        (``identity``: the worker that ran it, when known)."""
        if self._closed():
            return
        activation = task.activation
        jobs = [j for j in activation.jobs if j.WhichOneof("variant") not in _UNRECORDED_JOBS]
        if activation.jobs and not jobs:
            return
        time_ms = (
            activation.timestamp.ToMilliseconds()
            if activation.HasField("timestamp")
            else self.time_ms
        )
        open_task = self._open
        if open_task is not None and self._joins(open_task, jobs):
            open_task.completions.append(completion)
            open_task.tasks.append(task)
            return
        self.flush()
        if self._closed():
            return
        keys = [j.SerializeToString(deterministic=True) for j in jobs]
        failed = self._failed_keys
        retry = failed is not None and keys[: len(failed)] == failed
        new_jobs = jobs[len(failed) :] if retry and failed is not None else jobs
        before = len(self.events)
        self._write_child_cancel_requests(time_ms)
        for job in new_jobs:
            _jobs.write_job(self, job, task, time_ms)
        open_task = _OpenTask(
            time_ms=time_ms,
            attempt=self._failure_streak + 1,
            # A retry that brings no new event is transient: Temporal writes its events only if
            # it completes, so a workflow task failing over and over shows up once.
            transient=retry and len(self.events) == before,
            job_keys=keys,
            history_size_bytes=activation.history_size_bytes,
            suggest_continue_as_new=activation.continue_as_new_suggested,
            completions=[completion],
            tasks=[task],
            identity=identity or self.identity,
        )
        if not open_task.transient:
            self._schedule_and_start(open_task)
        self._open = open_task

    def pending_task(self, time_ms: int) -> None:
        """Write the WORKFLOW_TASK_SCHEDULED of a run no activation was recorded for yet."""
        self.add(self._wft_scheduled(1), time_ms=time_ms)

    def flush(self) -> None:
        """Write the outcome of the open workflow task, if it has one."""
        open_task, self._open = self._open, None
        if open_task is None or any(c is None for c in open_task.completions):
            return  # in flight: Temporal shows the task scheduled (and started), nothing more
        completions = [c for c in open_task.completions if c is not None]
        failed = next((c for c in completions if c.WhichOneof("status") == "failed"), None)
        if failed is not None:
            self._failed_keys = open_task.job_keys
            self._failure_streak += 1
            if not open_task.transient:
                cause = failed.failed.force_cause or (
                    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE
                )
                self.add(
                    WorkflowTaskFailedEventAttributes(
                        scheduled_event_id=open_task.scheduled_event_id,
                        started_event_id=open_task.started_event_id,
                        cause=cause,
                        failure=failed.failed.failure,
                        identity=open_task.identity,
                    )
                )
            return
        self._failed_keys = None
        self._failure_streak = 0
        if open_task.transient:
            self._schedule_and_start(open_task)
        commands = self._commands_with_markers(open_task, completions)
        self.wft_completed_id = self.add(
            WorkflowTaskCompletedEventAttributes(
                scheduled_event_id=open_task.scheduled_event_id,
                started_event_id=open_task.started_event_id,
                identity=open_task.identity,
                sdk_metadata=self._sdk_metadata(completions),
                **self._worker_version(),
            )
        )
        _commands.write_commands(self, commands, open_task.scheduled_event_id)

    def _commands_with_markers(self, open_task: _OpenTask,
                               completions: Sequence[WorkflowActivationCompletion]
                               ) -> list[WorkflowCommand]:
        """The task's commands as Core sends them, with local activities as Core records them.

        Core sends no command for a local activity until it resolves, then a marker in its place
        among the task's commands; one scheduled in an earlier task goes first. A cancellation
        of a local activity never reaches the server.
        """
        resolutions: dict[int, tuple[int, WorkflowTask]] = {}
        for index, task in enumerate(open_task.tasks):
            for job in task.activation.jobs:
                if job.HasField("resolve_activity") and job.resolve_activity.is_local:
                    resolutions[job.resolve_activity.seq] = (index, task)
        commands: list[WorkflowCommand] = []
        for seq in list(self.local_unresolved):
            if seq in resolutions:
                command, at_ms = self.local_unresolved.pop(seq)
                self._prepare_marker(command, at_ms, resolutions[seq])
                commands.append(command)
        for task, completion in zip(open_task.tasks, completions, strict=False):
            for command in _events.commands_as_sent(completion):
                variant = command.WhichOneof("variant")
                if variant == "request_cancel_local_activity":
                    continue
                if variant == "schedule_local_activity":
                    at_ms = task.activation.timestamp.ToMilliseconds()
                    seq = command.schedule_local_activity.seq
                    if seq not in resolutions:
                        self.local_unresolved[seq] = (command, at_ms)
                        continue
                    self._prepare_marker(command, at_ms, resolutions[seq])
                commands.append(command)
        return commands

    def _prepare_marker(self, command: WorkflowCommand, scheduled_ms: int,
                        resolved: tuple[int, WorkflowTask]) -> None:
        cmd = command.schedule_local_activity
        index, task = resolved
        job = next(j.resolve_activity for j in task.activation.jobs
                   if j.HasField("resolve_activity") and j.resolve_activity.seq == cmd.seq)
        info = task.activity_attempts.get(cmd.seq)
        original_ms = cmd.original_schedule_time.ToMilliseconds() \
            if cmd.HasField("original_schedule_time") else scheduled_ms
        # Core gives a cancellation it does not wait for no completion time.
        no_wait_cancel = job.result.WhichOneof("status") == "cancelled" and \
            cmd.cancellation_type != ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        self.local_markers[cmd.seq] = _events.local_activity_marker(
            cmd, job.result,
            attempt=info.attempt if info is not None else max(cmd.attempt, 1),
            original_schedule_ms=original_ms,
            complete_ms=None if no_wait_cancel else task.activation.timestamp.ToMilliseconds(),
            activation_index=index,
            backoff_failure=info.last_failure if info is not None else None,
            workflow_task_completed_event_id=0,
        )

    def _worker_version(self) -> dict[str, Any]:
        if not self.build_id:
            return {}
        return {"worker_version": WorkerVersionStamp(build_id=self.build_id, use_versioning=True),
                "versioning_behavior": VersioningBehavior.VERSIONING_BEHAVIOR_PINNED}

    def finish(self) -> list[HistoryEvent]:
        """Write what is left (the open task's outcome, the close event) and return the events."""
        self.flush()
        close = self._given_close if self._given_close is not None else self.derived_close
        if close is not None:
            self._write_close(close)
        return self.events

    # -- helpers --------------------------------------------------------------------------------

    def _closed(self) -> bool:
        return self.derived_close is not None

    def _joins(self, open_task: _OpenTask, jobs: Sequence[WorkflowActivationJob]) -> bool:
        """Whether an activation belongs to the open workflow task (Core answered all its jobs)."""
        if not jobs or open_task.transient:
            return False
        pending: list[WorkflowActivationCompletion] = []
        for c in open_task.completions:
            if c is None or c.WhichOneof("status") != "successful":
                return False
            pending.append(c)
        commands = [cmd for c in pending for cmd in _events.commands_as_sent(c)]
        if any(_events.is_terminal(cmd) for cmd in commands):
            return False
        return all(_jobs.resolved_by_core(self, job, commands) for job in jobs)

    def _wft_scheduled(self, attempt: int) -> WorkflowTaskScheduledEventAttributes:
        timeout = Duration()
        if self.start_request.HasField("workflow_task_timeout"):
            timeout.CopyFrom(self.start_request.workflow_task_timeout)
        else:
            timeout.FromSeconds(DEFAULT_WORKFLOW_TASK_TIMEOUT_S)
        return WorkflowTaskScheduledEventAttributes(
            task_queue=_events.task_queue(self.task_queue),
            start_to_close_timeout=timeout,
            attempt=attempt,
        )

    def _schedule_and_start(self, open_task: _OpenTask) -> None:
        open_task.scheduled_event_id = self.add(
            self._wft_scheduled(open_task.attempt), time_ms=open_task.time_ms
        )
        # The workflow saw these through its activation; Core takes them from this event on
        # replay, so they must be the same or a workflow that reads them would diverge.
        open_task.started_event_id = self.add(
            WorkflowTaskStartedEventAttributes(
                scheduled_event_id=open_task.scheduled_event_id,
                identity=open_task.identity,
                history_size_bytes=open_task.history_size_bytes,
                suggest_continue_as_new=open_task.suggest_continue_as_new,
            )
        )

    def _sdk_metadata(
        self, completions: Sequence[WorkflowActivationCompletion]
    ) -> WorkflowTaskCompletedMetadata:
        lang_flags: list[int] = []
        for c in completions:
            for flag in c.successful.used_internal_flags:
                if flag not in lang_flags:
                    lang_flags.append(flag)
        metadata = WorkflowTaskCompletedMetadata(lang_used_flags=lang_flags)
        if not self._flags_written:
            # Core writes every flag it knows, and its SDK's name, on a run's first completion.
            metadata.core_used_flags.extend(CORE_USED_FLAGS)
            metadata.sdk_name = SDK_NAME
            metadata.sdk_version = temporalio.__version__
            self._flags_written = True
        return metadata

    def _write_child_cancel_requests(self, time_ms: int) -> None:
        # Core cancels a child through a request of its own (not the workflow's), which the server
        # acknowledges with no job for the workflow: write that acknowledgement before the next
        # events, where the server would have put it.
        for child in self.child_cancels_sent:
            _jobs.write_child_cancel_requested(self, child, time_ms)
        self.child_cancels_sent.clear()

    def _write_close(self, close: HistoryEvent) -> None:
        event = HistoryEvent()
        event.CopyFrom(close)
        event.event_id = len(self.events) + 1
        if event.HasField("event_time"):
            self.time_ms = max(self.time_ms, event.event_time.ToMilliseconds())
        event.event_time.FromMilliseconds(self.time_ms)
        attrs = _events.attributes_of(event)
        if attrs is not None and _WFT_COMPLETED_FIELD in attrs.DESCRIPTOR.fields_by_name:
            # The engine stored the event before these ids existed; they are the history's.
            setattr(attrs, _WFT_COMPLETED_FIELD, self.wft_completed_id)
        if event.HasField("workflow_execution_continued_as_new_event_attributes"):
            self._fill_continue_as_new(event)
        self.events.append(event)

    def _fill_continue_as_new(self, event: HistoryEvent) -> None:
        # The server (and Core, for memo and search attributes) carries over what the workflow
        # did not set for the next run.
        can = event.workflow_execution_continued_as_new_event_attributes
        if not can.workflow_type.name:
            can.workflow_type.CopyFrom(self.start_request.workflow_type)
        if not can.task_queue.name:
            can.task_queue.CopyFrom(_events.task_queue(self.task_queue))
        if not can.HasField("workflow_run_timeout") and self.start_request.HasField(
            "workflow_run_timeout"
        ):
            can.workflow_run_timeout.CopyFrom(self.start_request.workflow_run_timeout)
        if not can.HasField("workflow_task_timeout"):
            can.workflow_task_timeout.CopyFrom(self._wft_scheduled(1).start_to_close_timeout)
        if not can.memo.fields and self.memo:
            can.memo.CopyFrom(Memo(fields=self.memo))
        if not can.search_attributes.indexed_fields and self.search_attributes:
            can.search_attributes.CopyFrom(SearchAttributes(indexed_fields=self.search_attributes))
        if not can.initiator:
            can.initiator = ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW


def started_attributes(
    *,
    run_id: str,
    start_request: StartWorkflowExecutionRequest,
    start_time_ms: int,
    first_execution_run_id: str,
    init: InitializeWorkflow | None,
    attempt: int,
    continued_from_run_id: str | None,
    parent_workflow_id: str | None,
    parent_run_id: str | None,
    parent_namespace: str | None,
) -> WorkflowExecutionStartedEventAttributes:
    """WORKFLOW_EXECUTION_STARTED of a run, from its start request.

    What the start request cannot hold (the result and failure a continued run carries over, its
    root workflow) comes from the run's ``InitializeWorkflow`` job when there is one.
    """
    req = start_request
    attrs = WorkflowExecutionStartedEventAttributes(
        workflow_type=req.workflow_type,
        task_queue=_events.task_queue(req.task_queue.name),
        input=req.input,
        continued_execution_run_id=continued_from_run_id or "",
        original_execution_run_id=run_id,
        identity=req.identity,
        first_execution_run_id=first_execution_run_id or run_id,
        attempt=attempt,
        cron_schedule=req.cron_schedule,
        memo=req.memo,
        search_attributes=req.search_attributes,
        header=req.header,
        workflow_id=req.workflow_id,
    )
    attrs.workflow_task_timeout.FromSeconds(DEFAULT_WORKFLOW_TASK_TIMEOUT_S)
    _events.copy_set_fields(req, attrs, (
        "workflow_execution_timeout",
        "workflow_run_timeout",
        "workflow_task_timeout",
        "retry_policy",
        "priority",
        "versioning_override",
    ))
    if req.HasField("workflow_start_delay"):
        attrs.first_workflow_task_backoff.CopyFrom(req.workflow_start_delay)
    if req.HasField("workflow_execution_timeout"):
        expiration = start_time_ms + req.workflow_execution_timeout.ToMilliseconds()
        attrs.workflow_execution_expiration_time.FromMilliseconds(expiration)
    if continued_from_run_id:
        attrs.initiator = ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_WORKFLOW
    if init is not None:
        if init.continued_initiator:
            attrs.initiator = init.continued_initiator
        _events.copy_set_fields(init, attrs, ("continued_failure", "last_completion_result"))
        if init.HasField("root_workflow"):
            attrs.root_workflow_execution.CopyFrom(init.root_workflow)
        if parent_workflow_id is None and init.HasField("parent_workflow_info"):
            parent_workflow_id = init.parent_workflow_info.workflow_id
            parent_run_id = init.parent_workflow_info.run_id
            parent_namespace = init.parent_workflow_info.namespace
    if parent_workflow_id is not None:
        attrs.parent_workflow_namespace = parent_namespace or req.namespace
        attrs.parent_workflow_execution.CopyFrom(
            WorkflowExecution(workflow_id=parent_workflow_id, run_id=parent_run_id or "")
        )
    return attrs


def build_history(
    *,
    run_id: str,
    start_request: StartWorkflowExecutionRequest,
    start_time_ms: int,
    first_execution_run_id: str,
    tasks: Sequence[WorkflowTask],
    final_completion: WorkflowActivationCompletion | None,
    close_event: HistoryEvent | None = None,
    attempt: int = 1,
    continued_from_run_id: str | None = None,
    identity: str = "",
    parent_workflow_id: str | None = None,
    parent_run_id: str | None = None,
    parent_namespace: str | None = None,
    build_id: str | None = None,
) -> list[HistoryEvent]:
    """The Temporal history of one run, as a Temporal server and Core worker would have written it.

    ``tasks`` are the run's recorded workflow tasks in order (task 0 carries
    ``InitializeWorkflow``); the completion of task ``i`` is ``tasks[i + 1].previous_completion``
    and that of the last task is ``final_completion`` (``None`` while it is in flight: the
    history then ends with that task scheduled and started). ``close_event`` is the run's close
    event as the engine stored it; when given it is the history's last event, in place of one
    derived from the completions (a terminated or timed-out run has no other). Its id, time and
    references to other events are renumbered here.

    Workflow-task events carry the identity of the worker that recorded the task, and
    ``identity`` where a record names none (records of older dbosify versions); activity events
    carry the identity of the attempt's record; the started event carries the start request's
    own identity. ``attempt``, ``continued_from_run_id`` and the ``parent_*`` arguments are the run's
    own (a start request cannot hold them). ``build_id``: the worker version the run is pinned
    to, written on every workflow-task-completed event as Temporal writes the worker version. Event times are the activations' timestamps (which
    Core sets from the workflow task started time), so ``workflow.now()`` replays exactly; a
    close event keeps its own time.

    Two kinds of activation do not start a workflow task of their own, as with Core: one whose
    jobs Core itself would have answered inside the running task (an activity, child or signal
    the workflow cancelled, unless it waits for the cancellation) joins that task, and its
    commands are written with the task's. A task retried after a workflow-task failure with the
    same jobs first (the engine re-feeding the failed activation) writes only its new jobs, and
    nothing at all until an attempt completes, which shows up with its attempt number.

    The events carry what temporalio's ``Replayer`` needs to replay the run offline and to detect
    changed code: activity ids and types, patch markers in Core's format, update requests in
    their accepted events, and Core's internal flags (see :data:`CORE_USED_FLAGS`). Raises
    ``ValueError`` if the records contradict each other (a resolution for an unknown command).
    """
    init: InitializeWorkflow | None = None
    if tasks:
        for job in tasks[0].activation.jobs:
            if job.HasField("initialize_workflow"):
                init = job.initialize_workflow
    builder = HistoryBuilder(
        run_id=run_id, start_request=start_request, identity=identity, close_event=close_event
    )
    builder.build_id = build_id
    builder.start(
        started_attributes(
            run_id=run_id,
            start_request=start_request,
            start_time_ms=start_time_ms,
            first_execution_run_id=first_execution_run_id,
            init=init,
            attempt=attempt,
            continued_from_run_id=continued_from_run_id,
            parent_workflow_id=parent_workflow_id,
            parent_run_id=parent_run_id,
            parent_namespace=parent_namespace,
        ),
        start_time_ms,
    )
    if not tasks:
        builder.pending_task(start_time_ms)
    for i, task in enumerate(tasks):
        if i + 1 < len(tasks):
            completion = tasks[i + 1].previous_completion
            if completion is None:
                raise ValueError(f"workflow task {i + 1} of run {run_id} lacks previous_completion")
        else:
            completion = final_completion
        # Task 0 is derived, not recorded: the worker that recorded task 1 completed it.
        worker = task.identity or (tasks[1].identity if i == 0 and len(tasks) > 1 else "")
        builder.task(task, completion, worker)
    return builder.finish()
