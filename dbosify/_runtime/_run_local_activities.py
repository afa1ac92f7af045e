"""The local activities of a run: what Core does for ``workflow.execute_local_activity``.

A local activity runs in the process that runs its workflow, on that worker's activity runner,
with no activity task row and no commit of its own: its outcome becomes a ``ResolveActivity``
job (``is_local``) of the run's next activation, recorded with that activation's completion in
the one step that records every event (:mod:`._driver`). The history shows it as Core records
it, a ``core_local_activity`` marker (:mod:`dbosify.history._build`). A recovered run replays the
recorded resolution; the activity is not called again. An attempt a crash cut short runs again,
from the attempt its command carries, as on Core (which keeps local retries in memory too).

Core's rules, kept here: failed attempts are retried in this process while the backoff is at
most ``local_retry_threshold`` (60 s by default); a longer backoff resolves the activity with
``DoBackoff``, and the workflow sleeps on a timer and schedules it again with the next attempt
number and the original schedule time. Schedule-to-close counts from that original time,
start-to-close per attempt (clamped to schedule-to-close), schedule-to-start from the command.
A ``TRY_CANCEL`` or ``ABANDON`` cancellation resolves at once; ``WAIT_CANCELLATION_COMPLETED``
waits for the attempt to end.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.bridge.proto.activity_result import ActivityExecutionResult, ActivityResolution
from temporalio.bridge.proto.activity_task import ActivityCancelReason, Start
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import (
    ActivityCancellationType,
    ScheduleLocalActivity,
)

from dbosify._records import ActivityAttemptInfo
from dbosify._runtime._activities import AttemptOutcome
from dbosify._runtime._retry import decide_retry
from dbosify._runtime._run_activities import activity_start
from dbosify._store._base import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._runtime._run_context import RunContext

logger = logging.getLogger("dbosify")

DEFAULT_LOCAL_RETRY_THRESHOLD_MS = 60_000
"""Core retries a local activity in-process while its backoff is at most this (unless the
command sets ``local_retry_threshold``); a longer one goes back to the workflow as a timer."""


@dataclass
class LocalActivityState:
    """A local activity a run scheduled and has not seen resolved yet."""

    seq: int
    command: ScheduleLocalActivity
    scheduled_ms: int
    """When this command was issued."""
    original_ms: int
    """When the first attempt was scheduled (schedule-to-close counts from here)."""
    attempt: int
    task: asyncio.Task[None] | None = None
    queued_ms: int = 0
    """When this process queued it: schedule-to-start counts from here, as Core counts it from
    when its worker queued it (a worker that replays the task queues it again)."""
    token: bytes | None = None
    """The running attempt's token on the activity runner, if one runs."""
    runner: Any = None
    cancel_requested: bool = False
    cancel_sent: bool = False
    resolved: bool = False

    @property
    def schedule_to_close_ms(self) -> int:
        cmd = self.command
        return int(cmd.schedule_to_close_timeout.ToMilliseconds()) \
            if cmd.HasField("schedule_to_close_timeout") else 0

    @property
    def start_to_close_ms(self) -> int:
        cmd = self.command
        stc = int(cmd.start_to_close_timeout.ToMilliseconds()) \
            if cmd.HasField("start_to_close_timeout") else 0
        s2c = self.schedule_to_close_ms
        # As Core: start-to-close is clamped to schedule-to-close, and defaults to it.
        return min(stc, s2c) if stc and s2c else (stc or s2c)

    @property
    def deadline_ms(self) -> int | None:
        s2c = self.schedule_to_close_ms
        return self.original_ms + s2c if s2c else None

    @property
    def retry_threshold_ms(self) -> int:
        cmd = self.command
        if cmd.HasField("local_retry_threshold"):
            return int(cmd.local_retry_threshold.ToMilliseconds())
        return DEFAULT_LOCAL_RETRY_THRESHOLD_MS


def timeout_failure(kind: TimeoutType.ValueType) -> Failure:
    """The failure Core gives a local activity that timed out (before it wraps it)."""
    failure = Failure(message="Activity timed out")
    failure.timeout_failure_info.timeout_type = kind
    return failure


def _cancel_failure() -> Failure:
    failure = Failure(message="Activity cancelled")
    failure.canceled_failure_info.SetInParent()
    return failure


@dataclass
class _Ending:
    """How a local activity ended: its resolution and the attempt that produced it."""

    resolution: ActivityResolution
    attempt: int
    failure: Failure | None = None
    """The attempt's failure, when the resolution does not carry it (a ``DoBackoff``)."""


class LocalActivitiesPart:
    """The local activities of a run (:class:`~dbosify._runtime._driver.RunDriver`)."""

    def __init__(self, run: RunContext,
                 resolved_attempts: dict[int, ActivityAttemptInfo]) -> None:
        self.run = run
        self.process: Process = run.process
        self.run_id = run.run_id
        self.local_activities: dict[int, LocalActivityState] = {}
        self.resolved_attempts = resolved_attempts
        """The activities part's: a local activity's resolution goes with its attempt too."""

    # Commands (called by the run once the completion that holds them is recorded) -------------

    def schedule(self, command: ScheduleLocalActivity, at_ms: int) -> None:
        original = int(command.original_schedule_time.ToMilliseconds()) \
            if command.HasField("original_schedule_time") else at_ms
        self.local_activities[command.seq] = LocalActivityState(
            seq=command.seq, command=command, scheduled_ms=at_ms, original_ms=original,
            attempt=max(command.attempt, 1))

    def request_cancel(self, seq: int) -> None:
        # Acted upon live, by collect_jobs: a recovered run replaying this command must not
        # resolve what a later recorded activation resolved already.
        la = self.local_activities.get(seq)
        if la is not None:
            la.cancel_requested = True

    def _local_cancellations(self) -> list[WorkflowActivationJob]:
        jobs: list[WorkflowActivationJob] = []
        for la in list(self.local_activities.values()):
            if not la.cancel_requested or la.resolved or la.cancel_sent:
                continue
            la.cancel_sent = True
            ctype = la.command.cancellation_type
            running = la.token is not None and la.runner is not None
            if running and ctype != ActivityCancellationType.ABANDON:
                la.runner.cancel(la.token, ActivityCancelReason.CANCELLED)
            if running and ctype == ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
                continue  # Resolved when the attempt ends.
            # Not started, backing off, or not waited for: Core resolves it as cancelled now.
            if la.task is not None and not running:
                la.task.cancel()
            resolution = ActivityResolution()
            resolution.cancelled.failure.CopyFrom(self._wrap_local(la, _cancel_failure(),
                                                                   "Local Activity cancelled"))
            job = self._resolution_job(la, _Ending(resolution, la.attempt))
            if job is not None:
                jobs.append(job)
        return jobs

    # What the run asks of it -------------------------------------------------------------------

    def start_due(self, now: int) -> None:
        """Start the local activities scheduled and not started yet (live only)."""
        for la in self.local_activities.values():
            if la.task is None and not la.resolved and not la.cancel_requested:
                la.queued_ms = now
                # A fresh context: the activity must not see the run's DBOS workflow context.
                la.task = asyncio.get_running_loop().create_task(
                    self._run_local_activity(la), context=contextvars.Context())

    def collect_jobs(self) -> list[WorkflowActivationJob]:
        """The jobs of an activation of their own, taken out of the run's pending jobs: Core
        delivers a local activity's resolution inside the running workflow task, in an
        activation of its own; the events that came meanwhile follow in the next one."""
        pending_jobs = self.run.pending_jobs
        local = self._local_cancellations()
        local += [j for j in pending_jobs if _is_local_resolution(j)]
        if local:
            pending_jobs[:] = [j for j in pending_jobs if not _is_local_resolution(j)]
        return local

    def stop(self) -> None:
        """The run closed: cancel its local activities."""
        for la in self.local_activities.values():
            if la.token is not None and la.runner is not None:
                la.runner.cancel(la.token, ActivityCancelReason.CANCELLED)
            if la.task is not None and not la.task.done():
                la.task.cancel()

    def forget(self, seq: int) -> None:
        """A recorded activation resolved ``seq``: nothing of it is left to run."""
        la = self.local_activities.pop(seq, None)
        if la is not None and la.task is not None and not la.task.done():
            la.task.cancel()

    # Running ----------------------------------------------------------------------------------

    async def _run_local_activity(self, la: LocalActivityState) -> None:
        try:
            ending = await self._attempts(la)
        except asyncio.CancelledError:
            return
        except Exception as err:  # dbosify itself failed: fail the activity, never hang the run.
            logger.exception("local activity %r of run %s could not run",
                             la.command.activity_type, self.run_id)
            ending = _Ending(ActivityResolution(), la.attempt)
            ending.resolution.failed.failure.message = \
                f"dbosify could not run the local activity: {err}"
            ending.resolution.failed.failure.application_failure_info.SetInParent()
        if ending is not None:
            self._deliver_local(la, ending)

    async def _attempts(self, la: LocalActivityState) -> _Ending | None:
        cmd = la.command
        first = True
        while True:
            now = self.run.clock_ms()
            deadline = la.deadline_ms
            if deadline is not None and now >= deadline:
                return self._timed_out(la, TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE)
            s2s = int(cmd.schedule_to_start_timeout.ToMilliseconds()) \
                if cmd.HasField("schedule_to_start_timeout") else 0
            if first and s2s and now - la.queued_ms > s2s:
                # Waited too long for this worker to start it.
                return self._timed_out(la, TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START)
            first = False
            outcome = await self._one_attempt(la, now, deadline)
            if outcome is None:
                return self._timed_out(la, TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE)
            result = outcome.result
            if result.HasField("completed"):
                resolution = ActivityResolution()
                resolution.completed.result.CopyFrom(result.completed.result)
                return _Ending(resolution, la.attempt)
            if result.HasField("cancelled"):
                if not la.cancel_requested:
                    return None  # Cancelled by this worker's shutdown: the run resumes elsewhere.
                resolution = ActivityResolution()
                resolution.cancelled.failure.CopyFrom(self._wrap_local(
                    la, result.cancelled.failure, "Local Activity cancelled"))
                return _Ending(resolution, la.attempt)
            if result.HasField("will_complete_async"):
                failure = Failure(message="a local activity cannot complete asynchronously "
                                          "(activity.raise_complete_async()); run it as a "
                                          "normal activity instead")
                failure.application_failure_info.non_retryable = True
            else:
                failure = result.failed.failure
            timed_out = outcome.timed_out is not None
            if timed_out:
                failure = timeout_failure(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE)
            if not la.cancel_requested:
                decision = decide_retry(cmd.retry_policy if cmd.HasField("retry_policy")
                                        else None, la.attempt, failure, now_ms=self.run.clock_ms(),
                                        schedule_to_close_deadline_ms=None)
                if decision.retry:
                    if decision.delay_ms > la.retry_threshold_ms:
                        resolution = ActivityResolution()
                        backoff = resolution.backoff
                        backoff.attempt = la.attempt + 1
                        backoff.backoff_duration.FromMilliseconds(decision.delay_ms)
                        backoff.original_schedule_time.FromMilliseconds(la.original_ms)
                        return _Ending(resolution, la.attempt, failure)
                    logger.info("local activity %r (workflow %r) attempt %d failed, retrying "
                                "in %.1fs: %s", cmd.activity_type, self.run.row.workflow_id,
                                la.attempt, decision.delay_ms / 1000, failure.message)
                    wait_ms = decision.delay_ms
                    if deadline is not None:
                        wait_ms = min(wait_ms, max(deadline - self.run.clock_ms(), 0))
                    await asyncio.sleep(wait_ms / 1000)
                    la.attempt += 1
                    continue
            resolution = ActivityResolution()
            resolution.failed.failure.CopyFrom(
                self._wrap_local(la, failure, "Local Activity timed out") if timed_out
                else failure)
            return _Ending(resolution, la.attempt)

    async def _one_attempt(self, la: LocalActivityState, now: int,
                           deadline: int | None) -> AttemptOutcome | None:
        """Run one attempt on this worker's activity runner; None when the schedule-to-close
        deadline came first (the attempt is then told it timed out)."""
        cmd = la.command
        build = getattr(self.run.row, "build_id", None) or None
        runner = self.process.activity_runner(self.run.row.task_queue, build, cmd.activity_type)
        if runner is None or not runner.serves(cmd.activity_type):
            # temporalio's worker refuses this in the workflow; here the attempt fails (and is
            # retried, as any failure), saying what to do.
            result = ActivityExecutionResult()
            result.failed.failure.message = (
                f"local activity type {cmd.activity_type!r} is not registered on the worker "
                f"of task queue {self.run.row.task_queue!r} in this process; pass it in the "
                "worker's activities=[...]")
            result.failed.failure.application_failure_info.type = "NotFoundError"
            return AttemptOutcome(result, now)
        token = f"{self.run_id}/L{la.seq}/{la.attempt}".encode()
        start = self._local_start(la, now)
        la.token, la.runner = token, runner
        if deadline is None:
            try:
                return await runner.execute(token, start)
            except asyncio.CancelledError:
                runner.cancel(token, ActivityCancelReason.CANCELLED)
                raise
            finally:
                la.token = None
        execution = asyncio.ensure_future(runner.execute(token, start))
        try:
            timeout = None if deadline is None else max(deadline - self.run.clock_ms(), 0) / 1000
            done, _ = await asyncio.wait({execution}, timeout=timeout)
            if not done:
                runner.cancel(token, ActivityCancelReason.TIMED_OUT)
                execution.add_done_callback(lambda f: f.cancelled() or f.exception())
                return None
            done_outcome: AttemptOutcome = execution.result()
            return done_outcome
        except asyncio.CancelledError:
            runner.cancel(token, ActivityCancelReason.CANCELLED)
            raise
        finally:
            la.token = None

    def _local_start(self, la: LocalActivityState, now: int) -> Start:
        cmd = la.command
        start = activity_start(self.run.row, self.run_id, cmd, la.attempt, la.scheduled_ms,
                               la.scheduled_ms, now)
        if la.schedule_to_close_ms:
            start.schedule_to_close_timeout.CopyFrom(cmd.schedule_to_close_timeout)
        if la.start_to_close_ms:
            start.start_to_close_timeout.FromMilliseconds(la.start_to_close_ms)
        return start

    # Resolving --------------------------------------------------------------------------------

    def _timed_out(self, la: LocalActivityState, kind: TimeoutType.ValueType) -> _Ending:
        resolution = ActivityResolution()
        resolution.failed.failure.CopyFrom(
            self._wrap_local(la, timeout_failure(kind), "Local Activity timed out"))
        return _Ending(resolution, la.attempt)

    def _wrap_local(self, la: LocalActivityState, cause: Failure, message: str) -> Failure:
        # Core wraps a local activity's timeout or cancellation (never its own failure) this way.
        wrapper = Failure(message=message)
        info = wrapper.activity_failure_info
        info.activity_type.name = la.command.activity_type
        info.activity_id = la.command.activity_id
        info.retry_state = RetryState.RETRY_STATE_CANCEL_REQUESTED
        wrapper.cause.CopyFrom(cause)
        return wrapper

    def _deliver_local(self, la: LocalActivityState, ending: _Ending) -> None:
        job = self._resolution_job(la, ending)
        if job is not None:
            self.run.deliver(job)

    def _resolution_job(self, la: LocalActivityState, ending: _Ending
                        ) -> WorkflowActivationJob | None:
        if la.resolved or self.run.closed or self.local_activities.get(la.seq) is not la:
            return None
        la.resolved = True
        self.local_activities.pop(la.seq, None)
        # The marker's attempt (and, for a DoBackoff, the failure it records) go with the
        # activation, as a normal activity's final attempt does.
        self.resolved_attempts[la.seq] = ActivityAttemptInfo(
            ending.attempt, now_ms(), self.process.identity, ending.failure)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = la.seq
        job.resolve_activity.is_local = True
        job.resolve_activity.result.CopyFrom(ending.resolution)
        return job


def _is_local_resolution(job: WorkflowActivationJob) -> bool:
    return job.HasField("resolve_activity") and job.resolve_activity.is_local
