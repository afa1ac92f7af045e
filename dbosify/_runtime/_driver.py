"""The body of one run: the activation loop (DESIGN §4, §9.1, §9.5).

A run is one DBOS workflow whose body is :meth:`RunDriver.run`. Every event its code observes
after the first is the output of one DBOS step (``dbosify.event``) that also holds the completion
the code answered it with: live, the driver waits for the next event, activates it unseen, records
both in one commit, and only then acts on the commands; on recovery DBOS hands back the recorded
outputs in order, and the same activations are fed to a fresh instance, checked against their
recorded commands. Commands are acted upon only once recorded and once the run is live again, so a
recovered run never repeats an activity whose outcome is recorded, and never misses one that was
scheduled. A last event whose code only closes the run is recorded by the close instead
(``CloseRecords``). The first activation's completion is an input of the DBOS workflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dbos import DBOS
from temporalio.api.common.v1 import TimeSkippingConfig
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

from dbosify._records import (
    EVENT_STEP,
    ActivityAttemptFailed,
    TaskCompleted,
    WorkflowTask,
    decode_completion,
    encode_completion,
    record_from_dict,
    task_completions,
)
from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import AttemptOutcome
from dbosify._runtime._commands import CLOSING_COMMANDS, commands_of, first_difference
from dbosify._runtime._held_output import HeldOutput
from dbosify._runtime._instance import DeadlockError, activate, create_instance
from dbosify._runtime._run_activities import ActivitiesPart, ActivityState
from dbosify._runtime._run_children import ChildrenPart, ChildState
from dbosify._runtime._run_clock import RunClock
from dbosify._runtime._run_local_activities import LocalActivitiesPart
from dbosify._runtime._run_messages import MessagesPart
from dbosify._store._base import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

logger = logging.getLogger("dbosify")

_TASK_RETRY_FIRST_MS = 1000
_TASK_RETRY_MAX_MS = 30_000
_CLOSE_RETRY_FIRST_S = 0.5
_CLOSE_RETRY_MAX_S = 30.0
_INBOX_SAFETY_S = 5.0
"""A run waiting this long reads its inbox itself, in case a wake-up was lost."""


class RunDriver:
    """Runs one workflow run in this process.

    The driver activates the run's code and records each activation with its completion; its
    parts (activities, local activities, children, messages) each keep their own state, see
    the run through :class:`~._run_context.RunContext`, and are called from here in an order
    written out where it matters (:meth:`_collect_jobs`, :meth:`_next_event`,
    :meth:`_stop_activities`)."""

    def __init__(self, process: Process, run_id: str, *, recovering: bool,
                 row: Any = None) -> None:
        self.process = process
        self.run_id = run_id
        self.recovering = recovering
        self.closed = False
        self.idle = False
        """True while the run waits for its next event with nothing unrecorded."""
        self.waiting_to_start = False
        """Waiting for the run's execution time (a start delay, a retry's or cron's backoff)."""
        self.wake = asyncio.Event()
        self.instance: WorkflowInstance | None = None
        self.lock = asyncio.Lock()
        self.tasks: list[WorkflowTask] = []
        self.completions: list[WorkflowActivationCompletion] = []
        # A completion not recorded yet (a retried task, a delayed first task, a run recorded
        # in format 1): its commands wait until a TaskCompleted step records it.
        self.unrecorded: tuple[int, WorkflowActivationCompletion] | None = None
        self.recorded_completions: dict[int, WorkflowActivationCompletion] = {}
        self.used_flags: set[int] = set()
        self.timers: dict[int, int] = {}  # By seq: when each fires.
        self.pending_jobs: list[WorkflowActivationJob] = []
        # An admitted update's completion (activated live to run its validator) and its held
        # output; the run's lock is held until it is recorded.
        self.preactivated: tuple[WorkflowActivationCompletion, HeldOutput] | None = None
        self.first_completion: tuple[WorkflowActivationCompletion, HeldOutput] | None = None
        self.live_task: WorkflowTask | None = None
        """The task the last event made, as built (its record is the step's output)."""
        # The last task, when the run's close records it instead of a DBOS step (CloseRecords).
        self.unrecorded_tasks: list[WorkflowTask] = []
        self.close_task: asyncio.Future[None] | None = None
        self.task_failure: str | None = None
        self.task_retry_ms = 0
        self.task_retry_delay_ms = _TASK_RETRY_FIRST_MS
        self.history_length = 1  # WorkflowExecutionStarted
        self.visibility_task: asyncio.Future[None] | None = None
        # Update responses being recorded: the close waits for them, so an update whose handler
        # lets the run finish has its outcome stored before the run is seen closed.
        self.update_writes: set[asyncio.Future[None]] = set()
        self.final_completion: WorkflowActivationCompletion | None = None
        self.row: Any = row
        self.start_request = StartWorkflowExecutionRequest()
        self.deadline_ms: int | None = None
        # Per-workflow time skipping (._run_clock): None, and an offset of 0, for a run without
        # a time-skipping config, whose clock is the engine's.
        self.clock: RunClock | None = None
        self.clock_offset_ms = 0
        # A config sent by UpdateWorkflowExecutionOptions, applied by the run's own loop.
        self.clock_updates: list[tuple[TimeSkippingConfig,
                                       concurrent.futures.Future[RunClock]]] = []
        self.current_task: asyncio.Task[Any] | None = None
        self.prestarted = False
        # Event steps DBOS has recorded for this run and not yet handed back (recovery).
        self.recorded_events = 0
        # The run's parts, each with its own state (see RunContext for what they see of the
        # run). Local activities' resolutions go with their attempts as normal ones' do; the
        # inbox carries remote attempts' outcomes and children's closes to their parts.
        self.activity_part = ActivitiesPart(self)
        self.local_activity_part = LocalActivitiesPart(self, self.activity_part.resolved_attempts)
        self.child_part = ChildrenPart(self)
        self.message_part = MessagesPart(self, self.activity_part, self.child_part)

    def deliver(self, job: WorkflowActivationJob) -> None:
        """Hand ``job`` to the run's next activation, and wake the run (for the parts)."""
        self.pending_jobs.append(job)
        self.wake.set()

    # Read by describe, async activity handles, the worker's drain and time skipping.

    @property
    def activities(self) -> dict[int, ActivityState]:
        return self.activity_part.activities

    @property
    def children(self) -> dict[int, ChildState]:
        return self.child_part.children

    @property
    def outcomes(self) -> list[tuple[int, int, AttemptOutcome]]:
        return self.activity_part.outcomes

    # The DBOS workflow body -------------------------------------------------------------------

    async def prestart(self) -> str | None:
        """Run the first activation before the run's DBOS workflow exists (it derives from the
        run's row alone, so its event is durable already). Its completion, as text, is an input
        of the DBOS workflow, so DBOS writes it with the workflow, in that one commit; nothing
        it asks for is carried out before (:meth:`run` does that). None when there is nothing
        to pass: a delayed start, or a failed first activation (recorded later, by a step)."""
        self.start_request.ParseFromString(self.row.start_request)
        self._start_clock(self.row)
        self.prestarted = True
        if self.row.execution_time_ms > now_ms():
            return None
        # Queries wait until the completion is durable (run() releases the lock).
        await self.lock.acquire()
        held = HeldOutput()
        completion = await self._activate_task(0, locked=True, held=held)
        if completion is None:
            self.lock.release()
            held.release()
            return None
        self.first_completion = (completion, held)
        return encode_completion(completion)

    async def run(self, first: str | None = None) -> dict[str, Any] | None:
        """Drive the run until it closes; returns the DBOS workflow's output. ``first``: the
        first activation's completion, recorded as the DBOS workflow's input."""
        self.current_task = asyncio.current_task()
        if self.prestarted:
            if self.first_completion is not None:
                # The DBOS workflow (and with it the completion) is written: act on it.
                completion, held = self.first_completion
                self.first_completion = None
                self.recorded_completions[0] = completion
                self.lock.release()
                held.release()
                self._after_completion(0, completion)
            elif self.tasks and self.task_failure is None and await self._reach_execution_time():
                await self._feed(0)
            return await self._run_events()
        row = self.row if self.row is not None else \
            await self.process.db_call(self.process.store.get_run_by_id, self.run_id)
        if row is None or row.status != rs.RUNNING:
            return None
        self.row = row
        self.start_request.ParseFromString(row.start_request)
        recorded: list[dict[str, Any]] = []
        if self.recovering:
            # Read outside this DBOS workflow's context (db_call's thread does not inherit it):
            # called inside it, DBOS records the listing as a step of its own, which collides
            # with the recorded dbosify.event at that step number (DBOSUnexpectedStepError).
            steps = await self.process.db_call(DBOS.list_workflow_steps, self.run_id)
            events = [s for s in steps if s["function_name"] == EVENT_STEP]
            self.recorded_events = len(events)
            recorded = [s["output"] for s in events if s["output"] is not None]
        self._index_recorded(recorded, decode_completion(first) if first else None)
        self._start_clock(row)
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
        while delay_s > 0:
            # Woken early when a time-skipping test environment moves the clock
            # (dbosify._runtime._time_skipping), which reads this flag.
            self.waiting_to_start = True
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), delay_s)
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiting_to_start = False
            if self.clock_updates:
                await self._apply_clock_updates()
            delay_s = (self.row.execution_time_ms - now_ms()) / 1000
            if delay_s > 0 and self.message_part.inbox_dirty:
                # An event came: a termination ends the wait (messages wait for the start).
                row = await self.process.db_call(self.process.store.get_run_by_id, self.run_id)
                if row is None or row.status != rs.RUNNING:
                    self.closed = True
                    return False
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
                await self._record_live(await self._event_step())
            messages = self.message_part
            messages.applied_cursor = messages.inbox_cursor
            messages.progress.set()
        if self.close_task is not None:
            # The DBOS workflow ends only once the close is written: ended first, a crash in
            # between would leave the run open with nothing left to resume it.
            await self.close_task
        return self._output()

    async def _record_live(self, event: dict[str, Any]) -> None:
        """Record a live event with the completion its activation answers, in one commit, and
        only then act on it (DESIGN §4, §9.1).

        The activation runs first, unseen: queries wait on the run's lock and what the code
        prints is held (:mod:`._held_output`) until the commit is done. The commit is a *sync*
        DBOS step (DBOS checks, runs and writes it in one thread hop; an async step takes two).
        When the code only closes the run, no step is taken: the close statement writes the task
        and its completion into ``dbosify_runs.close_records``, beside the close event, in one
        commit. A crash before the commit loses the activation and nothing else: the event is
        waited for again (an activity's outcome by running it again, at least once as always).
        """
        admitted = self.preactivated
        self.preactivated = None
        task = self.live_task
        if task is None or self.task_failure is not None:
            if admitted is not None:
                self.lock.release()
                admitted[1].release()
            await self._apply_step(
                await DBOS.run_step_async({"name": EVENT_STEP}, _recorded, event))
            return
        if admitted is None:
            await self.lock.acquire()
        try:
            index = len(self.tasks)
            if admitted is not None:
                completion: WorkflowActivationCompletion | None = admitted[0]
                held = admitted[1]
            else:
                held = HeldOutput()
                completion = await self._activate_task(index, task, locked=True, held=held)
            if completion is not None:
                task = replace(task, completion=completion)
                event["records"][-1] = task.to_record()
                commands = commands_of(completion)
                if (len(event["records"]) == 1 and set(event) == {"records", "inbox_cursor"}
                        and len(commands) == 1
                        and commands[0].WhichOneof("variant") in CLOSING_COMMANDS):
                    messages = self.message_part
                    messages.inbox_cursor = max(messages.inbox_cursor, int(event["inbox_cursor"]))
                    self._forget_resolved(task.activation)
                    self.tasks.append(task)
                    self.unrecorded_tasks.append(task)
                    self.recorded_completions[index] = completion  # By the close.
                    self._after_completion(index, completion)
                    if self.close_task is not None:
                        await asyncio.gather(self.close_task, return_exceptions=True)
                    held.release()
                    return
            output = await DBOS.run_step_async({"name": EVENT_STEP}, _recorded, event)
            held.release()
            await self._apply_step(output, live=(index, completion))
        finally:
            self.lock.release()

    def _output(self) -> dict[str, Any]:
        # Every completion is recorded with its task (format 2): nothing is left for the output.
        return {}

    def _index_recorded(self, recorded: list[dict[str, Any]],
                        first: WorkflowActivationCompletion | None) -> None:
        # Index every recorded completion by task number before replaying: patch markers must
        # be announced before a task is replayed (DESIGN §9.1), and format 1 stored them one
        # task late.
        records = [record_from_dict(data) for output in recorded
                   for data in output.get("records", [])]
        self.recorded_completions.update(task_completions(records, first))

    async def _event_step(self) -> dict[str, Any]:
        output = await self._next_event()
        output["inbox_cursor"] = self.message_part.cursor_to_record()
        return output

    def _forget_resolved(self, activation: WorkflowActivation) -> None:
        # Live, _collect_jobs has already dropped what this task resolves; a task replayed on
        # recovery must drop it here, or its activity would run again and its timer refire.
        for job in activation.jobs:
            if job.HasField("resolve_activity"):
                self.activity_part.forget(job.resolve_activity.seq)
                self.local_activity_part.forget(job.resolve_activity.seq)
            elif job.HasField("fire_timer"):
                self.timers.pop(job.fire_timer.seq, None)
            elif job.HasField("resolve_signal_external_workflow"):
                self.message_part.forget_external("signal_external_workflow_execution",
                                                  job.resolve_signal_external_workflow.seq)
            elif job.HasField("resolve_request_cancel_external_workflow"):
                self.message_part.forget_external(
                    "request_cancel_external_workflow_execution",
                    job.resolve_request_cancel_external_workflow.seq)
            elif job.HasField("resolve_child_workflow_execution_start") or \
                    job.HasField("resolve_child_workflow_execution"):
                self.child_part.job_replayed(job)

    async def _apply_step(self, output: dict[str, Any],
                          live: tuple[int, WorkflowActivationCompletion | None] | None = None
                          ) -> None:
        """Apply a recorded step: replayed on recovery, or just written live (``live``: the
        index and completion of the task it recorded, activated before the commit)."""
        messages = self.message_part
        messages.inbox_cursor = max(messages.inbox_cursor, int(output.get("inbox_cursor", 0)))
        for data in output.get("records", []):
            record = record_from_dict(data)
            if isinstance(record, ActivityAttemptFailed):
                self.activity_part.apply_attempt_failed(record)
            elif isinstance(record, TaskCompleted):
                if self.unrecorded is not None and self.unrecorded[0] == record.task:
                    index, completion = self.unrecorded
                    self.unrecorded = None
                    self.recorded_completions[index] = completion
                    self._after_completion(index, completion)
            else:
                self._forget_resolved(record.activation)
                self.tasks.append(record)
                index = len(self.tasks) - 1
                if live is not None and live[0] == index:
                    if live[1] is not None:
                        self.recorded_completions[index] = live[1]
                        self._after_completion(index, live[1])
                else:
                    await self._feed(index)
        if output.get("terminated"):
            self.closed = True
            self._stop_activities()
            # Closed by whoever terminated it: waiters here read the run again.
            self.process.notify_closed(self.run_id, b"")
            self.process.spawn(self.child_part.apply_close_policies_after())
        elif output.get("timed_out"):
            await self._close_timed_out(output["timed_out"])

    # The run's clock (per-workflow time skipping, ._run_clock) -------------------------------

    def clock_ms(self) -> int:
        """Now, on the run's clock: the engine's, plus what the run has skipped."""
        return now_ms() + self.clock_offset_ms

    def _start_clock(self, row: Any) -> None:
        """The run's deadline and first task, on its clock (a child starts at its parent's
        virtual time)."""
        req = self.start_request
        if getattr(row, "time_skipping", None) is not None or \
                req.HasField("time_skipping_config"):
            self.clock = RunClock.of_run(
                row, req.time_skipping_config if req.HasField("time_skipping_config")
                else None, now_ms())
        start_offset = 0
        if self.clock is not None:
            self.clock_offset_ms = self.clock.offset_ms
            start_offset = self.clock.start_offset_ms
        self.deadline_ms = rs.run_deadline_ms(req, row.start_time_ms + start_offset)
        first = rs.initial_activation(row, req)
        if start_offset:
            first.timestamp.FromMilliseconds(row.execution_time_ms + start_offset)
        self.tasks.append(WorkflowTask(first))

    def update_time_skipping(self, config: TimeSkippingConfig
                             ) -> concurrent.futures.Future[RunClock]:
        """Apply a time-skipping config (UpdateWorkflowExecutionOptions, from any thread): the
        future resolves to the clock once it is applied and stored."""
        done: concurrent.futures.Future[RunClock] = concurrent.futures.Future()
        self.clock_updates.append((config, done))
        loop = self.process.loop
        if loop is not None:
            loop.call_soon_threadsafe(self.wake.set)
        return done

    async def _apply_clock_updates(self) -> None:
        updates, self.clock_updates = self.clock_updates, []
        clock = self.clock if self.clock is not None else RunClock(offset_ms=self.clock_offset_ms)
        for config, _ in updates:
            clock.apply(config, now_ms())
        try:
            await self._store_clock(clock)
        except BaseException as err:
            for _, done in updates:
                if not done.done():
                    done.set_exception(err if isinstance(err, Exception)
                                       else RuntimeError(str(err)))
            raise
        self.clock = clock
        self.clock_offset_ms = clock.offset_ms
        for _, done in updates:
            try:
                done.set_result(replace(clock))
            except concurrent.futures.InvalidStateError:
                pass  # Given up by the caller (it saw the run close); the config holds.

    async def _store_clock(self, clock: RunClock) -> None:
        text = clock.to_json()
        await self.process.db_call(
            lambda: self.process.store.update_run(self.run_id, time_skipping=text))

    async def _skip_time(self, now: int) -> bool:
        """Skip the run's clock if the run waits on time alone; True if it moved (the run then
        looks for what fell due). The new offset is stored before anything acts on it."""
        clock = self.clock
        assert clock is not None
        messages = self.message_part
        if messages.inbox_dirty or self.pending_jobs or self.outcomes or \
                messages.pending_updates or self.task_failure is not None \
                or self.unrecorded is not None or self._in_flight():
            return False
        deadlines = list(self.timers.values())
        self.activity_part.add_deadlines(deadlines)
        if self.deadline_ms is not None:
            deadlines.append(self.deadline_ms)
        target = clock.skip_target(now, min(deadlines) if deadlines else None)
        if target is None:
            return False
        before = (clock.offset_ms, clock.enabled, clock.ff_completed)
        moved = replace(clock)
        moved.advance_to(now, target)
        if (moved.offset_ms, moved.enabled, moved.ff_completed) == before:
            return False
        await self._store_clock(moved)
        self.clock = moved
        self.clock_offset_ms = moved.offset_ms
        return True

    def _in_flight(self) -> bool:
        """Work the run waits on besides time (Temporal's in-flight work: activities, local
        activities, children, signals and cancels to other workflows)."""
        if any(not act.resolved for act in self.activities.values()):
            return True
        if self.local_activity_part.local_activities:
            return True
        if any(not child.resolved for child in self.children.values()):
            return True
        return bool(self.message_part.external)

    # Waiting for the next event ---------------------------------------------------------------

    async def _next_event(self) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        messages = self.message_part
        self.live_task = None
        poll_s = _INBOX_SAFETY_S
        while True:
            if self.unrecorded is not None:
                # Recorded before anything it asks for is carried out (a retried task).
                index, completion = self.unrecorded
                records.append(TaskCompleted(index, completion, self.process.identity).to_record())
                return {"records": records}
            if self.clock_updates:
                await self._apply_clock_updates()
            now = now_ms() + self.clock_offset_ms
            if self.task_failure is not None:
                if now >= self.task_retry_ms and await self._retry_failed_task():
                    continue
                if messages.inbox_dirty:
                    # Messages wait for the retried task; a terminate ends the run now.
                    stop = await messages.read_inbox()
                    if stop is not None:
                        return {"records": records, **stop}
                await self._wait(min(max(self.task_retry_ms - now, 1) / 1000, poll_s),
                                 task_failed=True)
                continue
            if messages.inbox_dirty:
                stop = await messages.read_inbox()
                if stop is not None:
                    return {"records": records, **stop}
            if self.deadline_ms is not None and now >= self.deadline_ms:
                return {"records": records, "timed_out": now}
            jobs = self._collect_jobs(now, records)
            if jobs:
                activation = WorkflowActivation(run_id=self.run_id,
                                                history_length=self.history_length)
                activation.timestamp.FromMilliseconds(now)
                activation.jobs.extend(jobs)
                resolved_attempts = self.activity_part.resolved_attempts
                attempts = {
                    j.resolve_activity.seq: resolved_attempts.pop(j.resolve_activity.seq)
                    for j in jobs if j.HasField("resolve_activity")
                    and j.resolve_activity.seq in resolved_attempts
                }
                task = WorkflowTask(activation, None, attempts, self.process.identity)
                records.append(task.to_record())
                self.live_task = task
                return {"records": records}
            if records:
                return {"records": records}
            while messages.pending_updates:
                admitted = await self._admit_update(messages.pending_updates.pop(0), now)
                if admitted is not None:
                    self.live_task = admitted
                    return {"records": [admitted.to_record()]}
            # Nothing to record: carry out what the recorded commands ask for (live only).
            self.activity_part.start_due(now)
            self.local_activity_part.start_due(now)
            messages.send_external_commands()
            self.child_part.drive()
            if self.clock is not None and self.clock.enabled and await self._skip_time(now):
                continue
            await self._wait(self._seconds_to_next_deadline(now, poll_s))

    async def _wait(self, seconds: float, task_failed: bool = False) -> None:
        self.wake.clear()
        messages = self.message_part
        # While a workflow task is failed, outcomes wait for its retry: waiting on them would
        # spin (and freeze the loop).
        if messages.inbox_dirty or self.pending_jobs or \
                (self.activity_part.outcomes and not task_failed):
            return
        self.idle = True  # Everything handed to the run so far is recorded.
        try:
            await asyncio.wait_for(self.wake.wait(), max(seconds, 0.0))
        except asyncio.TimeoutError:
            # Wake-ups come in-process, by NOTIFY, or from the process's SQLite poll; a rare
            # look of our own covers one lost while a listener reconnected.
            loop = asyncio.get_running_loop()
            if loop.time() - messages.inbox_read_at >= _INBOX_SAFETY_S:
                messages.inbox_dirty = True
        finally:
            self.idle = False
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            # Python 3.11's wait_for drops a cancel racing the wake-up (bpo-42130).
            raise asyncio.CancelledError

    def _seconds_to_next_deadline(self, now: int, cap: float) -> float:
        deadlines = list(self.timers.values())
        self.activity_part.add_deadlines(deadlines)
        if self.deadline_ms is not None:
            deadlines.append(self.deadline_ms)
        if not deadlines:
            return cap
        return min(max(min(deadlines) - now, 0) / 1000, cap)

    def _collect_jobs(self, now: int, records: list[dict[str, Any]]) -> list[WorkflowActivationJob]:
        """The jobs of the run's next activation, if any (``records``: what is recorded with it
        besides)."""
        # Core delivers a local activity's resolution inside the running workflow task, in an
        # activation of its own; the events that came meanwhile follow in the next one.
        local = self.local_activity_part.collect_jobs()
        if local:
            return local
        jobs: list[WorkflowActivationJob] = list(self.pending_jobs)
        self.pending_jobs.clear()
        self.activity_part.collect_outcomes(now, records, jobs)
        for seq, at in sorted(self.timers.items(), key=lambda kv: (kv[1], kv[0])):
            if at <= now:
                del self.timers[seq]
                job = WorkflowActivationJob()
                job.fire_timer.seq = seq
                jobs.append(job)
        self.activity_part.collect_cancels_and_timeouts(now, jobs)
        return jobs

    def _stop_activities(self) -> None:
        self.activity_part.stop()
        self.local_activity_part.stop()

    # Activations ------------------------------------------------------------------------------

    async def _feed(self, index: int) -> None:
        """Activate task ``index``; act on its commands; check them against the record."""
        if self.task_failure is not None:
            return  # Retried from the start by _retry_failed_task once the wait is over.
        completion = await self._activate_task(index)
        if completion is None:
            return
        self._after_completion(index, completion)

    async def _activate_task(self, index: int, task: WorkflowTask | None = None, *,
                             locked: bool = False, held: HeldOutput | None = None
                             ) -> WorkflowActivationCompletion | None:
        """Activate task ``index`` (``task``, when it is not in ``self.tasks`` yet).
        ``locked``: the caller holds the run's lock; ``held``: hold what the code prints."""
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
            if not locked:
                await self.lock.acquire()
            try:
                if self.instance is None:
                    self.instance = self._new_instance(index)
                completion = await activate(self.instance, activation,
                                            self.process.activation_executor,
                                            self._registration().deadlock_timeout,
                                            self._registration().slots, held=held)
            finally:
                if not locked:
                    self.lock.release()
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
        build_id = getattr(self.row, "build_id", None)
        reg = self.process.registration(self.row.task_queue, self.row.workflow_type, build_id)
        if reg is None:
            version = f" with build id {build_id!r} (the version the run is pinned to)" \
                if build_id else ""
            raise LookupError(
                f"workflow type {self.row.workflow_type!r} is not registered on any worker of "
                f"task queue {self.row.task_queue!r}{version} in this process")
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
        self.task_retry_ms = self.clock_ms() + self.task_retry_delay_ms
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
        """Act on a completion's commands, once it is recorded (else it waits in
        ``unrecorded`` for a TaskCompleted step: nothing acts before it is durable)."""
        if replayed:
            return
        if index not in self.recorded_completions:
            self.unrecorded = (index, completion)
            return
        self.completions.append(completion)
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
            self.activity_part.schedule(command.schedule_activity, at_ms)
        elif kind == "request_cancel_activity":
            self.activity_part.request_cancel(command.request_cancel_activity.seq)
        elif kind == "start_timer":
            timer = command.start_timer
            self.timers[timer.seq] = at_ms + int(timer.start_to_fire_timeout.ToMilliseconds())
        elif kind == "cancel_timer":
            self.timers.pop(command.cancel_timer.seq, None)
        elif kind in ("upsert_workflow_search_attributes", "modify_workflow_properties"):
            self._write_visibility(command)
        elif kind == "update_response":
            write = asyncio.ensure_future(
                self.process.record_update_response(self.run_id, command.update_response))
            self.update_writes.add(write)
            write.add_done_callback(self.update_writes.discard)
            self.process.spawn(write)
        elif kind in ("signal_external_workflow_execution",
                      "request_cancel_external_workflow_execution"):
            self.message_part.send_later(kind, command)
        elif kind == "cancel_signal_workflow":
            self.message_part.cancel_signal(command.cancel_signal_workflow.seq)
        elif kind in ("start_child_workflow_execution", "cancel_child_workflow_execution"):
            self.child_part.apply_command(command)
        elif kind == "schedule_local_activity":
            self.local_activity_part.schedule(command.schedule_local_activity, at_ms)
        elif kind == "request_cancel_local_activity":
            self.local_activity_part.request_cancel(command.request_cancel_local_activity.seq)
        elif kind in ("respond_to_query", "set_patch_marker") or kind in CLOSING_COMMANDS:
            pass
        elif kind is not None:
            # Nexus operations are a later issue;
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

    # Updates and queries (messages the run answers live) --------------------------------------

    async def _admit_update(self, job: WorkflowActivationJob,
                            now: int) -> WorkflowTask | None:
        """Deliver an update live, validator first. A rejected update leaves no record (it is
        not history); an accepted one is recorded as delivered without its validator, which is
        how replay must see it (DESIGN §9.1)."""
        if self.task_failure is not None:
            self.message_part.pending_updates.insert(0, job)
            return None
        activation = WorkflowActivation(run_id=self.run_id, history_length=self.history_length)
        activation.timestamp.FromMilliseconds(now)
        activation.jobs.append(job)
        activation.available_internal_flags[:] = sorted(self.used_flags)
        # Held until the update is recorded (or rejected): a query must not see its handler's
        # effects before they are durable, nor read what it printed.
        await self.lock.acquire()
        held = HeldOutput()
        try:
            if self.instance is None:
                self.instance = self._new_instance(0)
            completion = await activate(self.instance, activation,
                                        self.process.activation_executor,
                                        self._registration().deadlock_timeout,
                                        self._registration().slots, held=held)
        except BaseException:
            self.lock.release()
            raise
        if completion.HasField("failed"):
            self.lock.release()
            held.discard()
            self._evict()
            self._task_failed(len(self.tasks), completion.failed.failure.message or
                              "workflow task failed")
            self.message_part.pending_updates.insert(0, job)
            return None
        commands = commands_of(completion)
        responses = [c.update_response for c in commands if c.HasField("update_response")
                     and c.update_response.protocol_instance_id == job.do_update.protocol_instance_id]
        others = [c for c in commands if not c.HasField("update_response")]
        if responses and responses[0].HasField("rejected") and not others:
            self.lock.release()
            held.release()  # A rejection is not history: nothing to wait for.
            await self.process.record_update_response(self.run_id, responses[0])
            return None
        recorded = WorkflowActivation()
        recorded.CopyFrom(activation)
        if responses and responses[0].HasField("accepted"):
            recorded.jobs[0].do_update.run_validator = False
        self.preactivated = (completion, held)  # The lock stays held until it is recorded.
        return WorkflowTask(recorded, identity=self.process.identity)

    async def query(self, job: WorkflowActivationJob) -> WorkflowCommand:
        """Answer a query on the live instance (never recorded)."""
        await self.message_part.catch_up()
        await self.visibility_written()
        async with self.lock:
            if self.instance is None or self.task_failure is not None:
                raise LookupError(self.task_failure or "the workflow has no live state yet")
            activation = WorkflowActivation(run_id=self.run_id, jobs=[job])
            activation.timestamp.FromMilliseconds(self.clock_ms())
            completion = await activate(self.instance, activation,
                                        self.process.activation_executor,
                                        self._registration().deadlock_timeout,
                                        self._registration().slots)
        if completion.HasField("failed"):
            raise LookupError(completion.failed.failure.message)
        for command in completion.successful.commands:
            if command.HasField("respond_to_query"):
                return command
        raise LookupError("the workflow did not answer the query")

    # Closing ----------------------------------------------------------------------------------

    async def _close(self, completion: WorkflowActivationCompletion, command: WorkflowCommand,
                     activation: WorkflowActivation) -> None:
        await self.visibility_written()
        if self.update_writes:
            await asyncio.gather(*self.update_writes, return_exceptions=True)
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
        await self.visibility_written()
        await self.process.closer().close_timed_out(self, at_ms)


def _recorded(event: dict[str, Any]) -> dict[str, Any]:
    """The body of a live event step: the event, already waited for."""
    return event
