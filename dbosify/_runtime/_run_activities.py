"""The activity side of a run: attempts, retries, timeouts and cancellation (DESIGN §4.2).

What Temporal's server and Core do for a scheduled activity, for one run: start each attempt
(in this process when it serves the activity's task queue, else offered to the processes that
do), decide retries with the run's records so attempt numbers and backoff survive a crash,
enforce schedule-to-close and schedule-to-start, and resolve cancellation per its type.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.bridge.proto.activity_result import ActivityExecutionResult, ActivityResolution
from temporalio.bridge.proto.activity_task import ActivityCancelReason, Start
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import (
    ActivityCancellationType,
    ScheduleActivity,
    ScheduleLocalActivity,
)

from dbosify._records import ActivityAttemptFailed, ActivityAttemptInfo
from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import AttemptOutcome
from dbosify._runtime._retry import decide_retry
from dbosify._store._base import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._runtime._run_context import RunContext

logger = logging.getLogger("dbosify")
_CAP_SLACK_MS = 50


@dataclass
class ActivityState:
    """An activity a run scheduled and has not seen resolved yet."""

    seq: int
    command: ScheduleActivity
    scheduled_ms: int
    attempt: int = 1
    next_attempt_ms: int = 0
    heartbeat_details: Payloads = field(default_factory=Payloads)
    task: asyncio.Task[None] | None = None
    remote_since_ms: int | None = None
    last_failure: Failure | None = None
    identity: str = ""
    """The worker of the attempt that ended last, when not this process."""
    offer: asyncio.Future[None] | None = None
    """Writing the attempt's offer to other processes (a cancel waits for it)."""
    started_ms: int = 0
    cancel_requested: bool = False
    cancel_sent: bool = False
    resolved: bool = False
    completing_async: bool = False
    """The attempt called ``activity.raise_complete_async()``: it is completed from outside."""
    async_beat_ms: int = 0
    """The last outside heartbeat of such an attempt known to the run."""
    async_expiring: bool = False
    """A timeout check of such an attempt is in flight."""

    @property
    def token(self) -> bytes:
        return f"{self.seq}/{self.attempt}".encode()

    @property
    def async_deadline(self) -> tuple[int, TimeoutType.ValueType] | None:
        """When and how an attempt completed from outside times out: Temporal's server enforces
        its start-to-close timeout, and its heartbeat timeout counted from the last outside
        heartbeat (the run learns of later ones when it checks)."""
        if not self.completing_async:
            return None
        cmd = self.command
        deadlines: list[tuple[int, TimeoutType.ValueType]] = []
        stc = int(cmd.start_to_close_timeout.ToMilliseconds()) \
            if cmd.HasField("start_to_close_timeout") else 0
        if stc > 0:
            deadlines.append((self.started_ms + stc, TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE))
        beat = int(cmd.heartbeat_timeout.ToMilliseconds()) \
            if cmd.HasField("heartbeat_timeout") else 0
        if beat > 0:
            deadlines.append((max(self.started_ms, self.async_beat_ms) + beat,
                              TimeoutType.TIMEOUT_TYPE_HEARTBEAT))
        return min(deadlines) if deadlines else None

    @property
    def async_deadline_ms(self) -> int | None:
        deadline = self.async_deadline
        return None if deadline is None or self.async_expiring else deadline[0]

    @property
    def schedule_to_close_deadline_ms(self) -> int | None:
        if self.command.HasField("schedule_to_close_timeout"):
            ms = int(self.command.schedule_to_close_timeout.ToMilliseconds())
            if ms > 0:
                return self.scheduled_ms + ms
        return None


def activity_start(row: Any, run_id: str, cmd: ScheduleActivity | ScheduleLocalActivity,
                   attempt: int, scheduled_ms: int, attempt_scheduled_ms: int, now: int) -> Start:
    """The start of an attempt of run ``run_id`` (its runs row ``row``), in the fields every
    activity has, local or not."""
    start = Start(
        workflow_namespace=row.namespace,
        workflow_type=row.workflow_type,
        activity_id=cmd.activity_id,
        activity_type=cmd.activity_type,
        attempt=attempt,
        is_local=isinstance(cmd, ScheduleLocalActivity),
    )
    start.workflow_execution.workflow_id = row.workflow_id
    start.workflow_execution.run_id = run_id
    for key, value in cmd.headers.items():
        start.header_fields[key].CopyFrom(value)
    start.input.extend(cmd.arguments)
    start.scheduled_time.FromMilliseconds(scheduled_ms)
    start.current_attempt_scheduled_time.FromMilliseconds(attempt_scheduled_ms)
    start.started_time.FromMilliseconds(now)
    if cmd.HasField("retry_policy"):
        start.retry_policy.CopyFrom(cmd.retry_policy)
    return start


class ActivitiesPart:
    """The activities of a run (:class:`~dbosify._runtime._driver.RunDriver`): what it scheduled
    and has not seen resolved, and the outcomes of their attempts, until its next activation."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.process: Process = run.process
        self.run_id = run.run_id
        self.wake = run.wake
        self.activities: dict[int, ActivityState] = {}
        self.outcomes: list[tuple[int, int, AttemptOutcome]] = []
        """Attempts' outcomes, by (seq, attempt), not yet made jobs (:meth:`collect_outcomes`)."""
        self.resolved_attempts: dict[int, ActivityAttemptInfo] = {}
        """The attempt that resolved each activity (local ones too: one seq space), for the
        task that delivers the resolution."""
        self.heartbeats_saved = False
        """Whether heartbeat details of this run were saved (their rows go when it closes)."""
        self.offered_remotely = False
        """Whether an attempt of this run was offered to other processes (their rows then go)."""

    # Commands and records (called by the run once the completion that holds them is recorded) -

    def schedule(self, command: ScheduleActivity, at_ms: int) -> None:
        self.activities[command.seq] = ActivityState(command.seq, command, at_ms,
                                                     next_attempt_ms=at_ms)

    def request_cancel(self, seq: int) -> None:
        act = self.activities.get(seq)
        if act is not None:
            act.cancel_requested = True

    def forget(self, seq: int) -> None:
        """A recorded activation resolved ``seq``: nothing of it is left to run."""
        self.activities.pop(seq, None)

    def apply_attempt_failed(self, record: ActivityAttemptFailed) -> None:
        act = self.activities.get(record.seq)
        if act is None:
            return
        act.attempt = record.attempt + 1
        act.last_failure = record.failure
        act.next_attempt_ms = record.next_attempt_ms
        act.heartbeat_details = Payloads()
        act.heartbeat_details.ParseFromString(record.heartbeat_details)
        act.task = None
        act.remote_since_ms = None

    def stop(self) -> None:
        """The run closed: cancel its running attempts, withdraw the offered ones."""
        for act in self.activities.values():
            if act.task is not None and not act.task.done():
                runner = self._runner_for(act)
                if runner is not None:
                    runner.cancel(self._token(act), ActivityCancelReason.CANCELLED)
        if any(a.remote_since_ms is not None for a in self.activities.values()):
            self.process.spawn(self.process.db_call(self.process.store.drop_activity_tasks,
                                                 self.run_id))

    def _pinned_build(self, act: ActivityState) -> str | None:
        # Temporal pins a versioned run's activities on its own task queue to its build id;
        # activities on other task queues go to any worker of theirs.
        row = self.run.row
        build = getattr(row, "build_id", None) if row is not None else None
        return build if build and act.command.task_queue == row.task_queue else None

    def _runner_for(self, act: ActivityState) -> Any:
        return self.process.activity_runner(act.command.task_queue, self._pinned_build(act),
                                            act.command.activity_type)

    def _token(self, act: ActivityState) -> bytes:
        return f"{self.run_id}/".encode() + act.token

    def _resolve(self, act: ActivityState, resolution: ActivityResolution) -> WorkflowActivationJob:
        act.resolved = True
        self.activities.pop(act.seq, None)
        self.resolved_attempts[act.seq] = ActivityAttemptInfo(
            act.attempt, act.started_ms or now_ms(), act.identity or self.process.identity,
            act.last_failure)
        job = WorkflowActivationJob()
        job.resolve_activity.seq = act.seq
        job.resolve_activity.result.CopyFrom(resolution)
        return job

    def _wrap_failure(self, act: ActivityState, cause: Failure,
                      retry_state: RetryState.ValueType) -> Failure:
        # Core wraps an activity's own failure before workflow code sees it.
        wrapper = Failure(message="Activity task failed")
        info = wrapper.activity_failure_info
        info.activity_type.name = act.command.activity_type
        info.activity_id = act.command.activity_id
        info.identity = act.identity or self.process.identity
        info.retry_state = retry_state
        wrapper.cause.CopyFrom(cause)
        return wrapper

    def _on_outcome(self, seq: int, attempt: int, outcome: AttemptOutcome, now: int,
                    records: list[dict[str, Any]]) -> WorkflowActivationJob | None:
        act = self.activities.get(seq)
        if act is None or act.resolved or act.attempt != attempt:
            return None  # Stale: the activity was resolved (cancelled, timed out) already.
        act.task = None
        act.remote_since_ms = None
        # An outside completion (AsyncActivityHandle) keeps the attempt's own start.
        act.started_ms = outcome.started_ms or act.started_ms
        act.identity = outcome.identity
        if act.cancel_requested and act.command.cancellation_type != \
                ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
            # Core resolves a TRY_CANCEL or ABANDON activity as cancelled the moment the
            # workflow asks, and ignores whatever the attempt does after: an outcome that
            # arrived while that request was being recorded loses to it. _cancel_or_timeout
            # resolves the activity as cancelled in this same pass.
            return None
        result = outcome.result
        if result.HasField("will_complete_async"):
            # activity.raise_complete_async(): the attempt goes on outside any worker until an
            # AsyncActivityHandle completes, fails or cancels it; its outcome then arrives in
            # the inbox like a remote attempt's. Held as a task so heartbeats find it.
            act.remote_since_ms = now
            act.completing_async = True
            self.offered_remotely = True
            act.offer = asyncio.ensure_future(self.process.db_call(
                self.process.store.hold_async_activity, self.run_id, seq, attempt,
                act.command.task_queue, act.command.activity_id))
            self.process.spawn(act.offer)
            return None
        act.completing_async = act.async_expiring = False
        resolution = ActivityResolution()
        if result.HasField("completed"):
            resolution.completed.result.CopyFrom(result.completed.result)
            return self._resolve(act, resolution)
        if (result.HasField("cancelled") and act.cancel_requested) or (
                act.cancel_requested and act.command.cancellation_type
                == ActivityCancellationType.WAIT_CANCELLATION_COMPLETED):
            cause = result.cancelled.failure if result.HasField("cancelled") else \
                result.failed.failure
            resolution.cancelled.failure.CopyFrom(
                self._wrap_failure(act, cause, RetryState.RETRY_STATE_CANCEL_REQUESTED))
            return self._resolve(act, resolution)
        failure = result.failed.failure
        if result.HasField("cancelled"):
            # Cancelled by its worker (shutdown), not by the workflow: a failed attempt, retried
            # by the policy on another worker, as in Temporal.
            failure = Failure(message="Worker shutting down")
            failure.application_failure_info.SetInParent()
            failure.cause.CopyFrom(result.cancelled.failure)
        decision = decide_retry(
            act.command.retry_policy if act.command.HasField("retry_policy") else None,
            attempt, failure, now_ms=now,
            schedule_to_close_deadline_ms=act.schedule_to_close_deadline_ms)
        if decision.retry and not act.cancel_requested:
            record = ActivityAttemptFailed(
                seq=seq, attempt=attempt, started_ms=outcome.started_ms, failed_ms=now,
                next_attempt_ms=now + decision.delay_ms, failure=failure,
                heartbeat_details=outcome.heartbeat_details.SerializeToString())
            self.apply_attempt_failed(record)
            records.append(record.to_record())
            logger.info("activity %r (workflow %r) attempt %d failed, retrying in %.1fs: %s",
                        act.command.activity_type, self.run.row.workflow_id, attempt,
                        decision.delay_ms / 1000, failure.message)
            return None
        if decision.state == RetryState.RETRY_STATE_TIMEOUT:
            # As Temporal's server: retries stopped by the schedule-to-close budget end in the
            # schedule-to-close timeout, caused by the last attempt's failure.
            details = failure.timeout_failure_info.last_heartbeat_details \
                if failure.HasField("timeout_failure_info") else outcome.heartbeat_details
            last: Failure | None = failure
            deadline = act.schedule_to_close_deadline_ms
            if failure.HasField("timeout_failure_info") and deadline is not None and \
                    now >= deadline - _CAP_SLACK_MS:
                # The attempt was cut at the budget's end (its timeout is capped to what is
                # left): on Temporal the schedule-to-close timer fires, caused by the failure
                # of the attempt before, if any.
                last = act.last_failure
            failure = _schedule_to_close_timeout(details, last)
        resolution.failed.failure.CopyFrom(self._wrap_failure(act, failure, decision.state))
        return self._resolve(act, resolution)

    def _cancel_or_timeout(self, act: ActivityState, now: int) -> WorkflowActivationJob | None:
        s2c = act.schedule_to_close_deadline_ms
        if s2c is not None and now >= s2c:
            self._send_cancel(act, ActivityCancelReason.TIMED_OUT)
            cause = _schedule_to_close_timeout(act.heartbeat_details, act.last_failure)
            resolution = ActivityResolution()
            resolution.failed.failure.CopyFrom(
                self._wrap_failure(act, cause, RetryState.RETRY_STATE_TIMEOUT))
            return self._resolve(act, resolution)
        expiry = act.async_deadline
        if expiry is not None and now >= expiry[0] and not act.async_expiring:
            act.async_expiring = True
            self.process.spawn(self._expire_async(act, expiry[1]))
        if act.remote_since_ms is not None and act.command.HasField("schedule_to_start_timeout"):
            s2s = int(act.command.schedule_to_start_timeout.ToMilliseconds())
            if s2s > 0 and now >= act.remote_since_ms + s2s and not act.cancel_sent and \
                    not act.completing_async:
                act.cancel_sent = True
                self.process.spawn(self._expire_unclaimed(act.seq, act.attempt))
        if not act.cancel_requested:
            return None
        running = act.task is not None or act.remote_since_ms is not None
        ctype = act.command.cancellation_type
        if running and ctype != ActivityCancellationType.ABANDON:
            self._send_cancel(act, ActivityCancelReason.CANCELLED)
        if running and ctype == ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
            return None  # Resolved by the attempt's outcome.
        cause = Failure(message="Activity cancelled")
        cause.canceled_failure_info.SetInParent()
        resolution = ActivityResolution()
        resolution.cancelled.failure.CopyFrom(
            self._wrap_failure(act, cause, RetryState.RETRY_STATE_CANCEL_REQUESTED))
        return self._resolve(act, resolution)

    async def _expire_async(self, act: ActivityState, kind: TimeoutType.ValueType) -> None:
        # Unless an outside completion came first (its outcome is then in the inbox), or, for
        # the heartbeat timeout, an outside heartbeat the run had not seen (the check is then
        # moved to that heartbeat's deadline).
        seq, attempt, store = act.seq, act.attempt, self.process.store
        beat_before = None
        if kind == TimeoutType.TIMEOUT_TYPE_HEARTBEAT:
            beat_before = now_ms() - int(act.command.heartbeat_timeout.ToMilliseconds())
        released, beat = await self.process.db_call(
            store.release_async_activity, self.run_id, seq, attempt, beat_before)
        if not released:
            if beat is not None:
                act.async_beat_ms = beat
                act.async_expiring = False
                self.wake.set()
            return
        saved = await self.process.db_call(store.load_heartbeat, self.run_id, seq)
        details = Payloads.FromString(saved) if saved else Payloads()
        result = ActivityExecutionResult()
        failure = result.failed.failure
        failure.message = "activity " + (
            "Heartbeat" if kind == TimeoutType.TIMEOUT_TYPE_HEARTBEAT else "StartToClose"
        ) + " timeout"
        failure.timeout_failure_info.timeout_type = kind
        failure.timeout_failure_info.last_heartbeat_details.CopyFrom(details)
        self.deliver_outcome(seq, attempt, AttemptOutcome(result, act.started_ms, details,
                                                          timed_out=kind))

    async def _expire_unclaimed(self, seq: int, attempt: int) -> None:
        # Only an attempt no worker has claimed can miss its schedule-to-start deadline.
        if await self.process.db_call(self.process.store.withdraw_activity_task, self.run_id, seq,
                                   attempt):
            outcome = AttemptOutcome(ActivityExecutionResult(), now_ms())
            failure = outcome.result.failed.failure
            failure.message = "activity ScheduleToStart timeout"
            failure.timeout_failure_info.timeout_type = TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START
            self.deliver_outcome(seq, attempt, outcome)

    def _send_cancel(self, act: ActivityState, reason: ActivityCancelReason.ValueType) -> None:
        if act.cancel_sent:
            return
        act.cancel_sent = True
        if act.task is not None:
            runner = self._runner_for(act)
            if runner is not None:
                runner.cancel(self._token(act), reason)
        elif act.remote_since_ms is not None:
            self.process.spawn(self._cancel_remote(act.seq, act.attempt, reason, act.offer))

    async def _cancel_remote(self, seq: int, attempt: int, reason: ActivityCancelReason.ValueType,
                             offer: asyncio.Future[None] | None) -> None:
        if offer is not None:
            await asyncio.gather(offer, return_exceptions=True)  # Cancel what was offered.
        if await self.process.db_call(self.process.store.cancel_activity_task, self.run_id, seq,
                                      attempt, reason):
            # No worker had claimed it: the attempt ends here, as cancelled.
            outcome = AttemptOutcome(ActivityExecutionResult(), now_ms())
            failure = outcome.result.cancelled.failure
            failure.message = "Activity cancelled"
            failure.canceled_failure_info.SetInParent()
            self.deliver_outcome(seq, attempt, outcome)

    def start_due(self, now: int) -> None:
        """Start the attempts that are due (live only)."""
        for act in self.activities.values():
            if act.resolved or act.task is not None or act.remote_since_ms is not None:
                continue
            if act.next_attempt_ms > now or act.cancel_requested:
                continue
            start = self._start_proto(act, now)
            runner = self._runner_for(act)
            if runner is not None:
                act.task = asyncio.get_running_loop().create_task(
                    self._run_local(act, runner, start), context=contextvars.Context())
            else:
                act.remote_since_ms = now
                self.offered_remotely = True
                act.offer = asyncio.ensure_future(self.process.db_call(
                    self.process.store.add_activity_task, self.run_id, act.seq, act.attempt,
                    act.command.task_queue, rs.encode_remote_task(self._token(act), start),
                    self._pinned_build(act)))
                self.process.spawn(act.offer)

    async def _run_local(self, act: ActivityState, runner: Any, start: Start) -> None:
        seq, attempt = act.seq, act.attempt
        store = self.process.store

        def save(details: Payloads) -> None:
            self.heartbeats_saved = True
            self.process.spawn(self.process.db_call(store.save_heartbeat, self.run_id, seq,
                                                 details.SerializeToString()))

        try:
            if self.run.recovering and not start.heartbeat_details:
                # The attempt a crash interrupted may have heartbeat: its details go on.
                saved = await self.process.db_call(store.load_heartbeat, self.run_id, seq)
                if saved:
                    start.heartbeat_details.extend(Payloads.FromString(saved).payloads)
            outcome = await runner.execute(self._token(act), start, save)
        except asyncio.CancelledError:
            return
        except Exception as err:  # The runner itself failed; report it as the attempt's failure.
            outcome = AttemptOutcome(ActivityExecutionResult(), now_ms())
            outcome.result.failed.failure.message = f"dbosify could not run the activity: {err}"
        self.deliver_outcome(seq, attempt, outcome)

    def deliver_outcome(self, seq: int, attempt: int, outcome: AttemptOutcome) -> None:
        """Hand an attempt's outcome to the run (local attempts, or remote ones via the inbox)."""
        self.outcomes.append((seq, attempt, outcome))
        self.wake.set()

    def add_outcome(self, seq: int, attempt: int, outcome: AttemptOutcome) -> None:
        """An attempt's outcome the run read in its inbox (it is awake already)."""
        self.outcomes.append((seq, attempt, outcome))

    # The run's next activation and its next deadline ------------------------------------------

    def collect_outcomes(self, now: int, records: list[dict[str, Any]],
                         jobs: list[WorkflowActivationJob]) -> None:
        """Add the jobs the outcomes received resolve to ``jobs``; failed attempts that will be
        retried are added to ``records``."""
        outcomes, self.outcomes = self.outcomes, []
        for seq, attempt, outcome in outcomes:
            job = self._on_outcome(seq, attempt, outcome, now, records)
            if job is not None:
                jobs.append(job)

    def collect_cancels_and_timeouts(self, now: int, jobs: list[WorkflowActivationJob]) -> None:
        """Add to ``jobs`` the activities resolved by a cancel request or a timeout by ``now``."""
        for act in list(self.activities.values()):
            if act.resolved:
                continue
            job = self._cancel_or_timeout(act, now)
            if job is not None:
                jobs.append(job)

    def add_deadlines(self, deadlines: list[int]) -> None:
        """Add to ``deadlines`` when the activities next need the run: a due attempt, a
        timeout."""
        for act in self.activities.values():
            if act.resolved:
                continue
            if act.task is None and act.remote_since_ms is None:
                deadlines.append(act.next_attempt_ms)
            s2c = act.schedule_to_close_deadline_ms
            if s2c is not None:
                deadlines.append(s2c)
            expiry = getattr(act, "async_deadline_ms", None)
            if expiry is not None:
                deadlines.append(expiry)
            if act.remote_since_ms is not None and not act.cancel_sent and \
                    not getattr(act, "completing_async", False) and \
                    act.command.HasField("schedule_to_start_timeout"):
                s2s = int(act.command.schedule_to_start_timeout.ToMilliseconds())
                if s2s > 0:
                    deadlines.append(act.remote_since_ms + s2s)

    def _start_proto(self, act: ActivityState, now: int) -> Start:
        cmd = act.command
        start = activity_start(self.run.row, self.run_id, cmd, act.attempt, act.scheduled_ms,
                               max(act.next_attempt_ms, act.scheduled_ms), now)
        start.heartbeat_details.extend(act.heartbeat_details.payloads)
        s2c = act.schedule_to_close_deadline_ms
        if cmd.HasField("schedule_to_close_timeout"):
            start.schedule_to_close_timeout.CopyFrom(cmd.schedule_to_close_timeout)
        stc_ms = int(cmd.start_to_close_timeout.ToMilliseconds()) \
            if cmd.HasField("start_to_close_timeout") else 0
        if s2c is not None:
            # Temporal caps an attempt at what is left of the schedule-to-close budget.
            left = max(s2c - now, 1)
            stc_ms = min(stc_ms, left) if stc_ms else left
        if stc_ms:
            start.start_to_close_timeout.FromMilliseconds(stc_ms)
        if cmd.HasField("heartbeat_timeout"):
            start.heartbeat_timeout.CopyFrom(cmd.heartbeat_timeout)
        if cmd.HasField("priority"):
            start.priority.CopyFrom(cmd.priority)
        return start


def _schedule_to_close_timeout(details: Payloads, last_failure: Failure | None) -> Failure:
    """Temporal's schedule-to-close timeout failure; its cause is the last attempt's failure."""
    failure = Failure(message="activity ScheduleToClose timeout")
    failure.timeout_failure_info.timeout_type = TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE
    failure.timeout_failure_info.last_heartbeat_details.CopyFrom(details)
    if last_failure is not None:
        failure.cause.CopyFrom(last_failure)
    return failure

