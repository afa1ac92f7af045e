"""The body of one run: the activation loop (DESIGN §4, §9.1, §9.5).

A run is one DBOS workflow whose body is :meth:`RunDriver.run`. Every event its code observes
after the first is the output of one DBOS step (``dbosify.event``): live, the driver waits for the
next event, then records it; on recovery DBOS hands back the recorded outputs in order, and the
same activations are fed to a fresh instance. Commands are acted upon only once the run is live
again, so a recovered run never repeats an activity whose outcome is recorded. A last event whose
code only closes the run is recorded by the close instead (``CloseRecords``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dbos import DBOS
from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.bridge.proto.workflow_activation import (
    InitializeWorkflow,
    WorkflowActivation,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import (
    WorkflowCommand,
)
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance

from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import AttemptOutcome
from dbosify._runtime._commands import CLOSING_COMMANDS, commands_of, first_difference
from dbosify._runtime._instance import DeadlockError, activate, create_instance
from dbosify._runtime._records import (
    ActivityAttemptFailed,
    ActivityAttemptInfo,
    WorkflowTask,
    record_from_dict,
)
from dbosify._runtime._run_activities import ActivityState, RunActivities
from dbosify._runtime._run_messages import RunMessages
from dbosify._runtime._run_waiting import RunWaiting
from dbosify._store._store import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

logger = logging.getLogger("dbosify")

EVENT_STEP = "dbosify.event"
"""Name of the DBOS step that records each event of a run."""

_TASK_RETRY_FIRST_MS = 1000
_TASK_RETRY_MAX_MS = 30_000
_CLOSE_RETRY_FIRST_S = 0.5
_CLOSE_RETRY_MAX_S = 30.0


class RunDriver(RunWaiting, RunActivities, RunMessages):
    """Runs one workflow run in this process."""

    def __init__(self, process: Process, run_id: str, *, recovering: bool,
                 row: Any = None) -> None:
        self.process = process
        self.run_id = run_id
        self.recovering = recovering
        self.closed = False
        self.idle = False
        """True while the run waits for its next event with nothing unrecorded."""
        self.wake = asyncio.Event()
        # A run created by this process has an empty inbox unless someone wrote to it since
        # (the process remembers those wake-ups); any other run reads its inbox first.
        self.inbox_dirty = recovering or not process.inbox_known_empty(run_id)
        self.inbox_read_at = 0.0
        self.instance: WorkflowInstance | None = None
        self.lock = asyncio.Lock()
        self.tasks: list[WorkflowTask] = []
        self.completions: list[WorkflowActivationCompletion] = []
        self.unrecorded_completion: WorkflowActivationCompletion | None = None
        self.recorded_completions: dict[int, WorkflowActivationCompletion] = {}
        self.used_flags: set[int] = set()
        self.activities: dict[int, ActivityState] = {}
        self.timers: dict[int, int] = {}
        self.outcomes: list[tuple[int, int, AttemptOutcome]] = []
        self.pending_jobs: list[WorkflowActivationJob] = []
        self.resolved_attempts: dict[int, ActivityAttemptInfo] = {}
        self.pending_updates: list[WorkflowActivationJob] = []
        self.update_inbox_ids: dict[str, int] = {}  # Update id -> its inbox event's id.
        self.external: dict[tuple[str, int], WorkflowCommand] = {}
        self.external_sending: set[tuple[str, int]] = set()
        self.preactivated: WorkflowActivationCompletion | None = None
        self.live_task: WorkflowTask | None = None
        # The last task, when the run's close records it instead of a DBOS step (CloseRecords).
        self.unrecorded_tasks: list[WorkflowTask] = []
        self.close_task: asyncio.Future[None] | None = None
        self.inbox_cursor = 0
        self.task_failure: str | None = None
        self.task_retry_ms = 0
        self.task_retry_delay_ms = _TASK_RETRY_FIRST_MS
        self.history_length = 1  # WorkflowExecutionStarted
        # Inbox events up to this id have been applied to the instance (queries wait for it).
        self.applied_cursor = 0
        self.progress = asyncio.Event()
        self.visibility_task: asyncio.Future[None] | None = None
        self.final_completion: WorkflowActivationCompletion | None = None
        self.row: Any = row
        self.start_request = StartWorkflowExecutionRequest()
        self.deadline_ms: int | None = None
        self.current_task: asyncio.Task[Any] | None = None
        self.prestarted: asyncio.Task[None] | None = None
        # Event steps DBOS has recorded for this run and not yet handed back (recovery).
        self.recorded_events = 0

    # The DBOS workflow body -------------------------------------------------------------------

    async def prestart(self) -> None:
        """Run the first activation, and start the activities it asks for, before the run's
        DBOS workflow exists: it derives from the run's row alone, so nothing needs recording
        first, and the work overlaps DBOS writing the workflow (DESIGN §4.3). A crash before
        DBOS has it re-runs those activities (at least once, as always)."""
        self.start_request.ParseFromString(self.row.start_request)
        self.deadline_ms = rs.run_deadline_ms(self.start_request, self.row.start_time_ms)
        self.tasks.append(WorkflowTask(rs.initial_activation(self.row, self.start_request)))
        if not await self._reach_execution_time():
            return
        await self._feed(0)
        if not self.closed and self.task_failure is None:
            self._start_due_attempts(now_ms())

    async def run(self) -> dict[str, Any] | None:
        """Drive the run until it closes; returns the DBOS workflow's output."""
        self.current_task = asyncio.current_task()
        if self.prestarted is not None:
            await self.prestarted
            return await self._run_events()
        row = self.row if self.row is not None else \
            await self.process.db_call(self.process.store.get_run_by_id, self.run_id)
        if row is None or row.status != rs.RUNNING:
            return None
        self.row = row
        self.start_request.ParseFromString(row.start_request)
        self.deadline_ms = rs.run_deadline_ms(self.start_request, row.start_time_ms)
        recorded: list[dict[str, Any]] = []
        if self.recovering:
            # Read outside this DBOS workflow's context (db_call's thread does not inherit it):
            # called inside it, DBOS records the listing as a step of its own, which collides
            # with the recorded dbosify.event at that step number (DBOSUnexpectedStepError).
            steps = await self.process.db_call(DBOS.list_workflow_steps, self.run_id)
            events = [s for s in steps if s["function_name"] == EVENT_STEP]
            self.recorded_events = len(events)
            recorded = [s["output"] for s in events if s["output"] is not None]
            self._index_recorded(recorded)
        self.tasks.append(WorkflowTask(rs.initial_activation(row, self.start_request)))
        if await self._reach_execution_time():
            await self._feed(0)
        return await self._run_events()

    async def _reach_execution_time(self) -> bool:
        """Wait for the run's execution time: a run started with a delay (``start_delay``, or
        the backoff of a retried run) takes its first workflow task then, as on Temporal.
        False when the run was closed meanwhile (terminated)."""
        delay_s = (self.row.execution_time_ms - now_ms()) / 1000
        if delay_s <= 0:
            return True
        await asyncio.sleep(delay_s)
        row = await self.process.db_call(self.process.store.get_run_by_id, self.run_id)
        if row is None or row.status != rs.RUNNING:
            self.closed = True
            return False
        return True

    async def _run_events(self) -> dict[str, Any] | None:
        while not self.closed:
            if self.recorded_events > 0:
                # Recorded before a crash: DBOS returns the output without running the step.
                self.recorded_events -= 1
                await self._apply_step(
                    await DBOS.run_step_async({"name": EVENT_STEP}, self._event_step))
            else:
                # Live: wait here, then record in a sync step, which DBOS checks, runs and
                # writes in one thread hop (an async step takes two, and more CPU per event).
                event = await self._event_step()
                if not await self._closed_unrecorded(event):
                    await self._apply_step(
                        await DBOS.run_step_async({"name": EVENT_STEP}, _recorded, event))
            self.applied_cursor = self.inbox_cursor
            self.progress.set()
        if self.close_task is not None:
            # The DBOS workflow ends only once the close is written: ended first, a crash in
            # between would leave the run open with nothing left to resume it.
            await self.close_task
        return self._output()

    async def _closed_unrecorded(self, event: dict[str, Any]) -> bool:
        """Activate a live event's task before it is recorded. When the code then closes the
        run (and does nothing else), the close records the task and no step is taken; otherwise
        the completion waits in ``preactivated`` for the step (:meth:`_apply_step`)."""
        task = self.live_task
        if (task is None or len(event.get("records", [])) != 1
                or set(event) != {"records", "inbox_cursor"}
                or self.instance is None or self.preactivated is not None
                or self.task_failure is not None):
            return False
        index = len(self.tasks)
        completion = await self._activate_task(index, task)
        if completion is None:
            return False  # A failed task is recorded as usual; its retry replays it.
        commands = commands_of(completion)
        if len(commands) != 1 or commands[0].WhichOneof("variant") not in CLOSING_COMMANDS:
            self.preactivated = completion
            return False
        self.inbox_cursor = max(self.inbox_cursor, int(event["inbox_cursor"]))
        self.unrecorded_completion = None
        self.tasks.append(task)
        self.unrecorded_tasks.append(task)
        self._after_completion(index, completion)
        return True

    def _output(self) -> dict[str, Any]:
        # A run closed by the engine (timeout, terminate) has its last completion unrecorded.
        final = self.final_completion or self.unrecorded_completion
        if final is None:
            return {}
        return WorkflowTask(WorkflowActivation(), final).to_record()

    def _index_recorded(self, recorded: list[dict[str, Any]]) -> None:
        # Completion k is stored with task k+1: index them by task number for look-ahead
        # (patch markers must be announced before task k is replayed, DESIGN §9.1).
        task_no = 0
        for output in recorded:
            for data in output.get("records", []):
                record = record_from_dict(data)
                if isinstance(record, WorkflowTask):
                    if record.previous_completion is not None:
                        self.recorded_completions[task_no] = record.previous_completion
                    task_no += 1

    async def _event_step(self) -> dict[str, Any]:
        output = await self._next_event()
        # Inbox events up to here are in this output's records (or were not history): a
        # recovered run reads the inbox after this id, so no signal is delivered twice.
        # Updates read but not admitted yet are not recorded: stop below the first of them.
        floor = min((self.update_inbox_ids.get(j.do_update.id, self.inbox_cursor + 1)
                     for j in self.pending_updates), default=self.inbox_cursor + 1)
        output["inbox_cursor"] = min(self.inbox_cursor, floor - 1)
        return output

    def _forget_resolved(self, activation: WorkflowActivation) -> None:
        # Live, _collect_jobs has already dropped what this task resolves; a task replayed on
        # recovery must drop it here, or its activity would run again and its timer refire.
        for job in activation.jobs:
            if job.HasField("resolve_activity"):
                self.activities.pop(job.resolve_activity.seq, None)
            elif job.HasField("fire_timer"):
                self.timers.pop(job.fire_timer.seq, None)
            elif job.HasField("resolve_signal_external_workflow"):
                self.external.pop(("signal_external_workflow_execution",
                                   job.resolve_signal_external_workflow.seq), None)
            elif job.HasField("resolve_request_cancel_external_workflow"):
                self.external.pop(("request_cancel_external_workflow_execution",
                                   job.resolve_request_cancel_external_workflow.seq), None)

    async def _apply_step(self, output: dict[str, Any]) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(output.get("inbox_cursor", 0)))
        for data in output.get("records", []):
            record = record_from_dict(data)
            if isinstance(record, ActivityAttemptFailed):
                self._apply_attempt_failed(record)
            else:
                self.unrecorded_completion = None
                self._forget_resolved(record.activation)
                self.tasks.append(record)
                if self.preactivated is not None:
                    # Activated live already (an update, speculatively validated).
                    completion, self.preactivated = self.preactivated, None
                    self.used_flags.update(completion.successful.used_internal_flags)
                    self._after_completion(len(self.tasks) - 1, completion)
                else:
                    await self._feed(len(self.tasks) - 1)
        if output.get("terminated"):
            self.closed = True
            self._stop_activities()
            # Closed by whoever terminated it: waiters here read the run again.
            self.process.notify_closed(self.run_id, b"")
        elif output.get("timed_out"):
            await self._close_timed_out(output["timed_out"])

    # Activations ------------------------------------------------------------------------------

    async def _feed(self, index: int) -> None:
        """Activate task ``index``; act on its commands; check them against the record."""
        if self.task_failure is not None:
            return  # Retried from the start by _retry_failed_task once the wait is over.
        completion = await self._activate_task(index)
        if completion is None:
            return
        self._after_completion(index, completion)

    async def _activate_task(self, index: int, task: WorkflowTask | None = None
                             ) -> WorkflowActivationCompletion | None:
        """Activate task ``index`` (``task``, when it is not in ``self.tasks`` yet)."""
        task = task if task is not None else self.tasks[index]
        activation = WorkflowActivation()
        activation.CopyFrom(task.activation)
        recorded = self.recorded_completions.get(index)
        activation.is_replaying = recorded is not None
        if recorded is not None:
            for command in commands_of(recorded):
                if command.HasField("set_patch_marker"):
                    job = WorkflowActivationJob()
                    job.notify_has_patch.patch_id = command.set_patch_marker.patch_id
                    activation.jobs.insert(0, job)
            flags = set(self.used_flags) | set(recorded.successful.used_internal_flags)
        else:
            flags = set(self.used_flags)
        activation.available_internal_flags[:] = sorted(flags)
        try:
            async with self.lock:
                if self.instance is None:
                    self.instance = self._new_instance(index)
                completion = await activate(self.instance, activation,
                                            self.process.activation_executor,
                                            self._registration().deadlock_timeout,
                                            self._registration().slots)
        except DeadlockError as err:
            self.instance = None  # Its thread is stuck; it cannot be reused or evicted.
            self._task_failed(index, str(err))
            return None
        except LookupError as err:
            self._task_failed(index, str(err))
            return None
        if completion.HasField("failed"):
            self._evict()
            self._task_failed(index, completion.failed.failure.message or "workflow task failed",
                              completion.failed.failure.stack_trace)
            return None
        if recorded is not None:
            diff = first_difference(recorded, completion)
            if diff is not None:
                self._evict()
                self._task_failed(index, (
                    f"nondeterminism in workflow {self.row.workflow_id!r} "
                    f"(type {self.row.workflow_type!r}, run {self.run_id}) at event {index}: "
                    f"the history recorded {diff[0]} but the workflow code now issues {diff[1]}; "
                    "guard changed code with workflow.patched(), or restore the old code "
                    "until running workflows finish"), nondeterminism=True)
                return None
        self.used_flags.update(completion.successful.used_internal_flags)
        return completion

    def _registration(self) -> Any:
        reg = self.process.registration(self.row.task_queue, self.row.workflow_type)
        if reg is None:
            raise LookupError(
                f"workflow type {self.row.workflow_type!r} is not registered on any worker of "
                f"task queue {self.row.task_queue!r} in this process")
        return reg

    def _new_instance(self, index: int) -> WorkflowInstance:
        first = self.tasks[0].activation
        init: InitializeWorkflow = first.jobs[0].initialize_workflow
        return create_instance(self._registration(), first, init)

    def _evict(self) -> None:
        instance, self.instance = self.instance, None
        if instance is None:
            return
        evict = WorkflowActivation(run_id=self.run_id)
        evict.jobs.add().remove_from_cache.message = "evicted"
        # Off the loop: temporalio's activate() leaves its thread without a running loop.
        future = asyncio.get_running_loop().run_in_executor(
            self.process.activation_executor, instance.activate, evict)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _task_failed(self, index: int, message: str, stack: str = "",
                     nondeterminism: bool = False) -> None:
        self.task_failure = message
        self.task_retry_ms = now_ms() + self.task_retry_delay_ms
        self.task_retry_delay_ms = min(self.task_retry_delay_ms * 2, _TASK_RETRY_MAX_MS)
        level = logging.ERROR
        logger.log(level, "workflow task failed for workflow %r run %s (task %d); it will be "
                   "retried: %s%s", self.row.workflow_id, self.run_id, index, message,
                   ("\n" + stack) if stack else "")
        self.process.spawn(self.process.db_call(
            lambda: self.process.store.update_run(self.run_id, task_failure=message[:4000])))

    async def _retry_failed_task(self) -> bool:
        """Replay every task on a fresh instance (the code may have changed since)."""
        self._evict()
        self.task_failure = None
        self.used_flags.clear()
        for index in range(len(self.tasks)):
            completion = await self._activate_task(index)
            if completion is None:
                return False
            if index == len(self.tasks) - 1:
                self._after_completion(index, completion, replayed=index < len(self.completions))
        self.task_retry_delay_ms = _TASK_RETRY_FIRST_MS
        self.process.spawn(self.process.db_call(
            lambda: self.process.store.update_run(self.run_id, task_failure=None)))
        return True

    def _after_completion(self, index: int, completion: WorkflowActivationCompletion,
                          replayed: bool = False) -> None:
        if replayed:
            return
        self.completions.append(completion)
        if index not in self.recorded_completions:
            self.unrecorded_completion = completion
        self.history_length += 3 + len(completion.successful.commands)
        activation = self.tasks[index].activation
        commands = commands_of(completion)
        for command in commands:
            self._apply_command(command, activation)
        closing = [c for c in commands if c.WhichOneof("variant") in CLOSING_COMMANDS]
        if closing and not self.closed:
            self.final_completion = completion
            self.closed = True
            self._stop_activities()
            self.close_task = asyncio.ensure_future(
                self._close(completion, closing[0], activation))
            self.process.spawn(self.close_task)

    def _apply_command(self, command: WorkflowCommand, activation: WorkflowActivation) -> None:
        kind = command.WhichOneof("variant")
        at_ms = int(activation.timestamp.ToMilliseconds())
        if kind == "schedule_activity":
            body = command.schedule_activity
            self.activities[body.seq] = ActivityState(body.seq, body, at_ms, next_attempt_ms=at_ms)
        elif kind == "request_cancel_activity":
            act = self.activities.get(command.request_cancel_activity.seq)
            if act is not None:
                act.cancel_requested = True
        elif kind == "start_timer":
            timer = command.start_timer
            self.timers[timer.seq] = at_ms + int(timer.start_to_fire_timeout.ToMilliseconds())
        elif kind == "cancel_timer":
            self.timers.pop(command.cancel_timer.seq, None)
        elif kind in ("upsert_workflow_search_attributes", "modify_workflow_properties"):
            self._write_visibility(command)
        elif kind == "update_response":
            self.process.spawn(self.process.record_update_response(self.run_id,
                                                                   command.update_response))
        elif kind in ("signal_external_workflow_execution",
                      "request_cancel_external_workflow_execution"):
            self.external[(kind, getattr(command, kind).seq)] = command
        elif kind in ("respond_to_query", "set_patch_marker") or kind in CLOSING_COMMANDS:
            pass
        elif kind is not None:
            # Children, local activities and Nexus are later issues;
            # say so plainly rather than leave the workflow waiting without a word.
            logger.error("workflow %r issued %s, which this dbosify version does not carry out "
                         "yet", self.row.workflow_id, kind)

    def _write_visibility(self, command: WorkflowCommand) -> None:
        """Apply a search-attribute or memo upsert in the background, after the earlier ones
        (the last upsert wins); queries and the close wait for them (:meth:`visibility_written`).
        """
        previous = self.visibility_task

        async def write() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await rs.apply_visibility_command(self.process, self.run_id, command)

        task = asyncio.ensure_future(write())
        self.visibility_task = task
        self.process.spawn(task)

    async def visibility_written(self) -> None:
        """Wait for the upserts issued so far: a describe or list after a query or a result
        shows them, as on Temporal (they are part of the completed workflow task)."""
        if self.visibility_task is not None:
            await asyncio.gather(self.visibility_task, return_exceptions=True)

    # Closing ----------------------------------------------------------------------------------

    async def _close(self, completion: WorkflowActivationCompletion, command: WorkflowCommand,
                     activation: WorkflowActivation) -> None:
        await self.visibility_written()
        delay_s = _CLOSE_RETRY_FIRST_S
        while True:
            try:
                await self.process.close_run(self, completion, command,
                                             int(activation.timestamp.ToMilliseconds()))
                return
            except Exception:
                # Until it is written the run stays open and its DBOS workflow pending (so a
                # restart resumes it); the database may be back in a moment.
                logger.exception("closing run %s failed; retrying in %.1f s", self.run_id,
                                 delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _CLOSE_RETRY_MAX_S)

    async def _close_timed_out(self, at_ms: int) -> None:
        self.closed = True
        self._stop_activities()
        event = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)
        event.event_time.FromMilliseconds(at_ms)
        event.workflow_execution_timed_out_event_attributes.retry_state = \
            RetryState.RETRY_STATE_TIMEOUT
        await self.visibility_written()
        await self.process.close_run_with_event(self, event, at_ms)


def _recorded(event: dict[str, Any]) -> dict[str, Any]:
    """The body of a live event step: the event, already waited for."""
    return event
