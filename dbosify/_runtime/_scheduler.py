"""Firing schedules: Temporal's scheduler, played by every process that runs a worker.

A schedule is one row (``dbosify_schedules``) holding its definition, its counters, the runs it
started that may still run, the starts its overlap policy buffered, and the next time it is due.
Whoever acts on a schedule -- a worker process at a due time, a client triggering or
backfilling it -- locks the row, starts the runs and writes the row back in one transaction, the
row's version guarding the write. So a due time fires exactly once however many processes serve
the database, and a process killed mid-way leaves nothing half done: the transaction rolls
back and the next process fires the time (late, if still within the catch-up window).

:class:`Scheduler` is the loop of one process: it sleeps until the earliest due time (at most a
second, so schedules created elsewhere are seen), then claims due schedules one at a time
(Postgres ``FOR UPDATE SKIP LOCKED``: two processes never wait on each other).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from temporalio.api.common.v1 import Payload, RetryPolicy, SearchAttributes
from temporalio.api.enums.v1 import ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.schedule.v1 import Schedule, ScheduleInfo
from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.converter import encode_search_attributes

from dbosify._runtime._schedule_spec import (
    CompiledSpec,
    compile_spec,
    jitter_offset_ms,
    next_cron_time,
    next_time,
)
from dbosify._runtime._starting import WorkflowAlreadyStarted, start_run, terminate_in
from dbosify._store import _schedules as q
from dbosify._store._clock import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

logger = logging.getLogger("dbosify")

P = ScheduleOverlapPolicy
S = WorkflowExecutionStatus
DEFAULT_CATCHUP_MS = 365 * 24 * 3600 * 1000
"""Temporal's default catch-up window: one year."""
MIN_CATCHUP_MS = 10_000
"""Temporal's smallest catch-up window."""
_MAX_SLEEP_S = 1.0
_MAX_TIMES_PER_PASS = 1000
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
SCHEDULED_BY_ID = SearchAttributeKey.for_keyword("TemporalScheduledById")




def rfc3339(ms: int) -> str:
    """A time as Temporal appends it to a scheduled workflow's id (UTC, whole seconds)."""
    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ScheduleConflict(Exception):
    """The schedule was written by someone else since it was read (or no longer exists)."""


@dataclass
class AfterCommit:
    """What a process does once the transaction that started or stopped runs has committed."""

    launch: list[tuple[str, Any]] = field(default_factory=list)
    """Runs this process owns and starts driving: (run id, row)."""
    wake: list[str] = field(default_factory=list)
    """Runs with a new event (a cancel request, a termination)."""
    started: int = 0


@dataclass
class ScheduleRecord:
    """A schedule's row, decoded, while one transaction changes it."""

    namespace: str
    schedule_id: str
    schedule: Schedule
    info: ScheduleInfo
    running: list[list[str]]
    """[workflow id, run id] of runs it started that were running when last looked at."""
    buffer: list[dict[str, int]]
    """Starts waiting for the running ones to end: nominal/scheduled ms, overlap, manual."""
    next_nominal_ms: int | None
    next_due_ms: int | None
    version: int
    memo: bytes | None = None
    search_attributes: bytes | None = None
    request_id: str | None = None
    _spec: CompiledSpec | None = None

    @staticmethod
    def of(row: Any) -> ScheduleRecord:
        return ScheduleRecord(
            namespace=row.namespace, schedule_id=row.schedule_id,
            schedule=Schedule.FromString(row.schedule), info=ScheduleInfo.FromString(row.info),
            running=json.loads(row.running), buffer=json.loads(row.buffer),
            next_nominal_ms=row.next_nominal_ms, next_due_ms=row.next_due_ms,
            version=row.version, memo=row.memo, search_attributes=row.search_attributes,
            request_id=row.request_id)

    @property
    def spec(self) -> CompiledSpec:
        if self._spec is None:
            self._spec = compile_spec(self.schedule.spec)
        return self._spec

    @property
    def overlap(self) -> int:
        return self.schedule.policies.overlap_policy or P.SCHEDULE_OVERLAP_POLICY_SKIP

    @property
    def catchup_ms(self) -> int:
        policies = self.schedule.policies
        if not policies.HasField("catchup_window"):
            return DEFAULT_CATCHUP_MS
        return max(policies.catchup_window.ToMilliseconds(), MIN_CATCHUP_MS)

    def due_after(self, after_ms: int) -> tuple[int | None, int | None]:
        """The next (nominal, due) times strictly after ``after_ms``."""
        nominal = next_time(self.spec, after_ms)
        if nominal is None:
            return None, None
        following = next_time(self.spec, nominal) if self.spec.jitter_ms else None
        return nominal, nominal + jitter_offset_ms(self.spec, self.schedule_id, nominal,
                                                   following)

    def future_times(self, from_ms: int, count: int = 10) -> list[int]:
        """The next due times from ``from_ms`` (as many as limited actions allow)."""
        state = self.schedule.state
        if state.limited_actions:
            count = min(count, state.remaining_actions)
        times: list[int] = []
        nominal = from_ms - 1
        while len(times) < count:
            nominal_next, due = self.due_after(nominal)
            if nominal_next is None or due is None:
                break
            times.append(due)
            nominal = nominal_next
        return times

    def attention(self) -> bool:
        return bool(self.buffer) or (self.schedule.policies.pause_on_failure
                                     and bool(self.running))

    def values(self) -> dict[str, Any]:
        """The columns to write back."""
        return {
            "schedule": self.schedule.SerializeToString(),
            "info": self.info.SerializeToString(),
            "running": json.dumps(self.running),
            "buffer": json.dumps(self.buffer),
            "next_nominal_ms": self.next_nominal_ms,
            "next_due_ms": self.next_due_ms,
            "attention": self.attention(),
            "paused": self.schedule.state.paused,
            "memo": self.memo,
            "search_attributes": self.search_attributes,
        }


def save(conn: sa.Connection, rec: ScheduleRecord) -> None:
    """Write a changed schedule back, or raise :class:`ScheduleConflict`."""
    if not q.update(conn, rec.namespace, rec.schedule_id, rec.version, rec.values()):
        raise ScheduleConflict(f"schedule {rec.schedule_id!r} changed while being written")
    rec.version += 1


def normalized_retry_policy(policy: RetryPolicy) -> None:
    """Temporal's defaults for a retry policy it stores (interval 1 s, coefficient 2,
    maximum interval 100 times the initial)."""
    if not policy.HasField("initial_interval") or policy.initial_interval.ToMilliseconds() == 0:
        policy.initial_interval.FromSeconds(1)
    if policy.backoff_coefficient == 0:
        policy.backoff_coefficient = 2.0
    if not policy.HasField("maximum_interval") or policy.maximum_interval.ToMilliseconds() == 0:
        policy.maximum_interval.FromMilliseconds(policy.initial_interval.ToMilliseconds() * 100)


def cron_continuation(old: StartWorkflowExecutionRequest, at_ms: int, *,
                      result: Payload | None = None,
                      failure: Failure | None = None) -> StartWorkflowExecutionRequest | None:
    """The next run of a workflow started with ``cron_schedule`` (Temporal's older cron), for
    a run that closed at ``at_ms``: completed (with ``result``), or failed or timed out (after
    its retries; ``failure``). The same request, delayed to the next cron time, carrying the
    last result or the failure. None without a cron schedule (a cancelled or terminated run
    ends its cron: its closer does not ask)."""
    if not old.cron_schedule:
        return None
    req = StartWorkflowExecutionRequest()
    req.CopyFrom(old)
    req.request_id = ""
    req.ClearField("workflow_start_delay")
    req.ClearField("continued_failure")
    if failure is not None:
        # The last successful result stays; the failure is the new run's last_failure.
        req.continued_failure.CopyFrom(failure)
    else:
        req.ClearField("last_completion_result")
        if result is not None:
            req.last_completion_result.payloads.append(result)
    req.workflow_start_delay.FromMilliseconds(max(next_cron_time(old.cron_schedule, at_ms)
                                                  - at_ms, 0))
    return req


# Acting ----------------------------------------------------------------------------------------

def refresh_running(conn: sa.Connection, rec: ScheduleRecord) -> None:
    """Drop the runs that ended; pause the schedule if one failed and its policy says so."""
    if not rec.running:
        return
    statuses = q.run_statuses(conn, [run_id for _, run_id in rec.running])
    still: list[list[str]] = []
    for workflow_id, run_id in rec.running:
        status = statuses.get(run_id)
        if status == S.WORKFLOW_EXECUTION_STATUS_RUNNING:
            still.append([workflow_id, run_id])
        elif status in (S.WORKFLOW_EXECUTION_STATUS_FAILED, S.WORKFLOW_EXECUTION_STATUS_TIMED_OUT) \
                and rec.schedule.policies.pause_on_failure:
            rec.schedule.state.paused = True
            rec.schedule.state.notes = (f"paused because workflow {workflow_id!r} "
                                        f"{S.Name(S.ValueType(status)).removeprefix('WORKFLOW_EXECUTION_STATUS_').lower()}")
    rec.running = still


def take(process: Process, conn: sa.Connection, rec: ScheduleRecord, nominal_ms: int,
         scheduled_ms: int, overlap: int, manual: bool, after: AfterCommit) -> None:
    """One action the schedule is to take: start it, or apply the overlap policy."""
    state = rec.schedule.state
    if not manual:
        if state.limited_actions and state.remaining_actions <= 0:
            return
    if q.acted_at_second(conn, rec.namespace, rec.schedule_id, nominal_ms):
        return
    overlap = overlap or rec.overlap
    item = {"nominal": nominal_ms, "scheduled": scheduled_ms, "overlap": overlap,
            "manual": int(manual)}
    if rec.running and overlap != P.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL:
        if overlap == P.SCHEDULE_OVERLAP_POLICY_SKIP:
            rec.info.overlap_skipped += 1
            return
        if overlap == P.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE:
            if rec.buffer:
                rec.info.buffer_dropped += 1
            else:
                rec.buffer.append(item)
            return
        if overlap == P.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL:
            rec.buffer.append(item)
            return
        if overlap == P.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER:
            for workflow_id, run_id in rec.running:
                cancel = RequestCancelWorkflowExecutionRequest(
                    namespace=rec.namespace, identity=process.identity,
                    reason=f"cancelled by schedule {rec.schedule_id!r} (overlap policy)")
                cancel.workflow_execution.workflow_id = workflow_id
                cancel.workflow_execution.run_id = run_id
                process.store.append_inbox(run_id, "cancel", cancel.SerializeToString(),
                                           f"schedule-cancel-{run_id}", conn=conn)
                after.wake.append(run_id)
            # Starts once the cancelled run has ended; a newer start replaces a waiting one.
            rec.info.buffer_dropped += len(rec.buffer)
            rec.buffer = [item]
            return
        if overlap == P.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER:
            for _, run_id in rec.running:
                terminate_in(process.store, conn, run_id,
                             f"terminated by schedule {rec.schedule_id!r} (overlap policy)",
                             process.identity)
                after.wake.append(run_id)
            rec.running = []
    start(process, conn, rec, item, after)


def start(process: Process, conn: sa.Connection, rec: ScheduleRecord, item: dict[str, int],
          after: AfterCommit) -> None:
    """Start the schedule's workflow for one action, as Temporal's scheduler does: the id gets
    the nominal time appended, the run gets the scheduled-by search attributes."""
    state = rec.schedule.state
    if not item["manual"] and state.limited_actions:
        state.remaining_actions -= 1
    action = rec.schedule.action.start_workflow
    nominal = item["nominal"]
    workflow_id = action.workflow_id if rec.schedule.policies.keep_original_workflow_id else \
        f"{action.workflow_id}-{rfc3339(nominal)}"
    req = StartWorkflowExecutionRequest(
        namespace=rec.namespace, workflow_id=workflow_id, workflow_type=action.workflow_type,
        task_queue=action.task_queue, input=action.input,
        workflow_execution_timeout=action.workflow_execution_timeout,
        workflow_run_timeout=action.workflow_run_timeout,
        workflow_task_timeout=action.workflow_task_timeout,
        identity=process.identity,
        request_id=f"schedule-{rec.schedule_id}-{nominal}",
        memo=action.memo, header=action.header, user_metadata=action.user_metadata,
        priority=action.priority)
    if action.HasField("retry_policy"):
        req.retry_policy.CopyFrom(action.retry_policy)
    if rec.overlap != P.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL:
        _carry_last_outcome(conn, rec, req)
    attrs = SearchAttributes()
    attrs.CopyFrom(action.search_attributes)
    encode_search_attributes(TypedSearchAttributes([
        SearchAttributePair(SCHEDULED_START_TIME,
                            datetime.fromtimestamp(nominal / 1000, timezone.utc)),
        SearchAttributePair(SCHEDULED_BY_ID, rec.schedule_id),
    ]), attrs)
    req.search_attributes.CopyFrom(attrs)
    local = process.serves_workflows(action.task_queue.name)
    try:
        # Pinned to the version of the worker here that will drive it, as a client start is.
        started = start_run(process.store, req, owner=process.executor_id if local else None,
                            conn=conn, build_id=process.start_build_id(
                                action.task_queue.name, action.workflow_type.name)
                            if local else None)
    except WorkflowAlreadyStarted as err:
        logger.warning("schedule %r could not start %s: %s", rec.schedule_id, workflow_id, err)
        return
    if started.created and local:
        process.expect_run(started.run_id)
        after.launch.append((started.run_id, started.row))
    actual = now_ms()
    q.add_action(conn, {"namespace": rec.namespace, "schedule_id": rec.schedule_id,
                        "nominal_ms": nominal, "scheduled_ms": item["scheduled"],
                        "actual_ms": actual, "workflow_id": workflow_id,
                        "run_id": started.run_id})
    rec.info.action_count += 1
    rec.running.append([workflow_id, started.run_id])
    after.started += 1


def _carry_last_outcome(conn: sa.Connection, rec: ScheduleRecord,
                        req: StartWorkflowExecutionRequest) -> None:
    """As Temporal's scheduler does for sequential runs (every policy but allow-all): the new
    run sees the last completed run's result, and the failure of a run that failed since."""
    for row in q.recent_outcomes(conn, rec.namespace, rec.schedule_id,
                                 (S.WORKFLOW_EXECUTION_STATUS_COMPLETED,
                                  S.WORKFLOW_EXECUTION_STATUS_FAILED)):
        if not row.close_event:
            continue
        event = HistoryEvent.FromString(row.close_event)
        if row.status == S.WORKFLOW_EXECUTION_STATUS_COMPLETED:
            req.last_completion_result.CopyFrom(
                event.workflow_execution_completed_event_attributes.result)
            return
        if not req.HasField("continued_failure"):
            req.continued_failure.CopyFrom(event.workflow_execution_failed_event_attributes.failure)


def drain_buffer(process: Process, conn: sa.Connection, rec: ScheduleRecord,
                 after: AfterCommit) -> None:
    """Start buffered actions whose turn has come (nothing running, or allow-all)."""
    while rec.buffer and (not rec.running or
                          rec.buffer[0]["overlap"] == P.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL):
        start(process, conn, rec, rec.buffer.pop(0), after)


def act(process: Process, conn: sa.Connection, rec: ScheduleRecord, now: int,
        after: AfterCommit) -> None:
    """Bring a schedule up to ``now``: watch its runs, start buffered actions, and take (or
    skip) every due time."""
    refresh_running(conn, rec)
    drain_buffer(process, conn, rec, after)
    passes = 0
    while rec.next_due_ms is not None and rec.next_nominal_ms is not None \
            and rec.next_due_ms <= now:
        nominal, due = rec.next_nominal_ms, rec.next_due_ms
        state = rec.schedule.state
        if state.paused:
            pass  # Times pass unacted while paused.
        elif now - due > rec.catchup_ms:
            rec.info.missed_catchup_window += 1
        elif not (state.limited_actions and state.remaining_actions <= 0):
            take(process, conn, rec, nominal, due, rec.overlap, False, after)
        passes += 1
        if passes >= _MAX_TIMES_PER_PASS:
            # Down for longer than the window allows: jump to the window's start.
            rec.next_nominal_ms, rec.next_due_ms = rec.due_after(
                max(nominal, now - rec.catchup_ms - 1))
            passes = 0
            continue
        rec.next_nominal_ms, rec.next_due_ms = rec.due_after(nominal)
    rec.info.buffer_size = len(rec.buffer)


def fire_due(process: Process, limit: int = 64) -> tuple[AfterCommit, int | None, bool]:
    """Act on every schedule due now or asking for attention; each in a transaction of its
    own, skipping those another process holds. Returns what to do after the commits, the
    soonest due time left and whether any schedule asks for attention."""
    store = process.store
    after = AfterCommit()
    now = now_ms()
    with store.engine.connect() as conn:
        # One cheap read while nothing is due (the common case, once a second per process).
        earliest, attention = q.earliest_due(conn)
        if not attention and (earliest is None or earliest > now):
            return after, earliest, attention
        candidates = q.needing_work(conn, now, limit)
    for namespace, schedule_id in candidates:
        mine = AfterCommit()
        try:
            with store.engine.begin() as conn:
                row = q.lock(conn, namespace, schedule_id, skip_locked=True)
                if row is None:
                    continue  # Being fired by another process, or deleted.
                if not ((row.next_due_ms is not None and row.next_due_ms <= now)
                        or row.attention):
                    continue  # Fired by another process since we looked.
                rec = ScheduleRecord.of(row)
                act(process, conn, rec, now, mine)
                save(conn, rec)
        except ScheduleConflict:
            continue
        except Exception:
            logger.exception("dbosify could not fire schedule %r; retrying", schedule_id)
            continue
        after.launch.extend(mine.launch)
        after.wake.extend(mine.wake)
        after.started += mine.started
    with store.engine.connect() as conn:
        earliest, attention = q.earliest_due(conn)
    return after, earliest, attention


def finish(process: Process, after: AfterCommit) -> None:
    """Carry out what committed work asks of this process (from any thread)."""
    for run_id, row in after.launch:
        process.launch_local(run_id, row)
    for run_id in after.wake:
        process.wake_run(run_id)


class Scheduler:
    """The schedule-firing loop of one process with workers (started by its maintenance)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.firing = False
        """True from reading due schedules until their runs are handed to this process (a
        time-skipping environment must not move the clock meanwhile)."""

    def ensure_running(self, owner: asyncio.Task[Any] | None) -> None:
        """Start the loop if it is not running; it stops when ``owner`` (the process's
        maintenance task) ends."""
        if self._task is not None and not self._task.done():
            return
        self._wake = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run())
        self._task = task
        if owner is not None:
            owner.add_done_callback(lambda _: task.cancel())

    def wake(self) -> None:
        """A schedule changed here: look again now (thread-safe)."""
        loop = self.process.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        process = self.process
        while not process.closed:
            sleep = _MAX_SLEEP_S
            try:
                self.firing = True
                try:
                    after, earliest, attention = await process.db_call(fire_due, process)
                    finish(process, after)
                finally:
                    self.firing = False
                if earliest is not None and not attention:
                    sleep = min(max((earliest - now_ms()) / 1000, 0.0), _MAX_SLEEP_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                if process.closed:
                    return
                logger.exception("dbosify schedule firing failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), sleep)
            except asyncio.TimeoutError:
                pass


def scheduler_of(process: Process) -> Scheduler:
    """The process's scheduler (created on first use)."""
    existing: Scheduler | None = getattr(process, "_scheduler", None)
    if existing is None:
        existing = Scheduler(process)
        process._scheduler = existing  # type: ignore[attr-defined]
    return existing


def run_scheduler(process: Process) -> None:
    """Hook for the process's maintenance loop: make sure schedules are being fired."""
    scheduler_of(process).ensure_running(asyncio.current_task())

