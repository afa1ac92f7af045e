"""The live side of a run: waiting for its next event (an activity outcome, a timer, a message,
a deadline) and making it the next workflow task, or the reason the run ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.bridge.proto.workflow_activation import WorkflowActivation, WorkflowActivationJob
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._records import ActivityAttemptInfo, TaskCompleted, WorkflowTask
from dbosify._runtime._activities import AttemptOutcome
from dbosify._store._store import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._runtime._run_activities import ActivityState

_INBOX_SAFETY_S = 5.0
"""A run waiting this long reads its inbox itself, in case a wake-up was lost."""


class RunWaiting:
    """Waiting for the next event of a :class:`~dbosify._runtime._driver.RunDriver` (a mixin:
    the driver owns the state declared here)."""

    process: Process
    run_id: str
    idle: bool
    wake: asyncio.Event
    history_length: int
    deadline_ms: int | None
    task_failure: str | None
    task_retry_ms: int
    inbox_dirty: bool
    inbox_read_at: float
    unrecorded: tuple[int, WorkflowActivationCompletion] | None
    resolved_attempts: dict[int, ActivityAttemptInfo]
    pending_jobs: list[WorkflowActivationJob]
    pending_updates: list[WorkflowActivationJob]
    outcomes: list[tuple[int, int, AttemptOutcome]]
    timers: dict[int, int]
    activities: dict[int, ActivityState]
    live_task: WorkflowTask | None
    """The task the last event made, as built (its record is the step's output)."""

    if TYPE_CHECKING:  # Provided by RunDriver and the other mixins.
        async def _retry_failed_task(self) -> bool: ...
        async def _read_inbox(self) -> dict[str, Any] | None: ...
        async def _admit_update(self, job: WorkflowActivationJob,
                                now: int) -> WorkflowTask | None: ...
        def _start_due_attempts(self, now: int) -> None: ...
        def _send_external_commands(self) -> None: ...
        def _drive_children(self) -> None: ...
        def _on_outcome(self, seq: int, attempt: int, outcome: AttemptOutcome, now: int,
                        records: list[dict[str, Any]]) -> WorkflowActivationJob | None: ...
        def _cancel_or_timeout(self, act: ActivityState,
                               now: int) -> WorkflowActivationJob | None: ...

    async def _next_event(self) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        self.live_task = None
        poll_s = _INBOX_SAFETY_S
        while True:
            if self.unrecorded is not None:
                # Recorded before anything it asks for is carried out (a retried task).
                index, completion = self.unrecorded
                records.append(TaskCompleted(index, completion, self.process.identity).to_record())
                return {"records": records}
            now = now_ms()
            if self.task_failure is not None:
                if now >= self.task_retry_ms and await self._retry_failed_task():
                    continue
                if self.inbox_dirty:
                    # Messages wait for the retried task; a terminate ends the run now.
                    stop = await self._read_inbox()
                    if stop is not None:
                        return {"records": records, **stop}
                await self._wait(min(max(self.task_retry_ms - now, 1) / 1000, poll_s),
                                 task_failed=True)
                continue
            if self.inbox_dirty:
                stop = await self._read_inbox()
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
                attempts = {
                    j.resolve_activity.seq: self.resolved_attempts.pop(j.resolve_activity.seq)
                    for j in jobs if j.HasField("resolve_activity")
                    and j.resolve_activity.seq in self.resolved_attempts
                }
                task = WorkflowTask(activation, None, attempts, self.process.identity)
                records.append(task.to_record())
                self.live_task = task
                return {"records": records}
            if records:
                return {"records": records}
            while self.pending_updates:
                admitted = await self._admit_update(self.pending_updates.pop(0), now)
                if admitted is not None:
                    self.live_task = admitted
                    return {"records": [admitted.to_record()]}
            self._start_due_attempts(now)
            self._send_external_commands()
            self._drive_children()
            await self._wait(self._seconds_to_next_deadline(now, poll_s))

    async def _wait(self, seconds: float, task_failed: bool = False) -> None:
        self.wake.clear()
        # While a workflow task is failed, outcomes wait for its retry: waiting on them would
        # spin (and freeze the loop).
        if self.inbox_dirty or self.pending_jobs or (self.outcomes and not task_failed):
            return
        self.idle = True  # Everything handed to the run so far is recorded.
        try:
            await asyncio.wait_for(self.wake.wait(), max(seconds, 0.0))
        except asyncio.TimeoutError:
            # Wake-ups come in-process, by NOTIFY, or from the process's SQLite poll; a rare
            # look of our own covers one lost while a listener reconnected.
            loop = asyncio.get_running_loop()
            if loop.time() - self.inbox_read_at >= _INBOX_SAFETY_S:
                self.inbox_dirty = True
        finally:
            self.idle = False
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            # Python 3.11's wait_for drops a cancel racing the wake-up (bpo-42130).
            raise asyncio.CancelledError

    def _seconds_to_next_deadline(self, now: int, cap: float) -> float:
        deadlines = list(self.timers.values())
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
        if self.deadline_ms is not None:
            deadlines.append(self.deadline_ms)
        if not deadlines:
            return cap
        return min(max(min(deadlines) - now, 0) / 1000, cap)

    def _collect_jobs(self, now: int, records: list[dict[str, Any]]) -> list[WorkflowActivationJob]:
        jobs: list[WorkflowActivationJob] = list(self.pending_jobs)
        self.pending_jobs.clear()
        outcomes, self.outcomes = self.outcomes, []
        for seq, attempt, outcome in outcomes:
            job = self._on_outcome(seq, attempt, outcome, now, records)
            if job is not None:
                jobs.append(job)
        for seq, at in sorted(self.timers.items(), key=lambda kv: (kv[1], kv[0])):
            if at <= now:
                del self.timers[seq]
                job = WorkflowActivationJob()
                job.fire_timer.seq = seq
                jobs.append(job)
        for act in list(self.activities.values()):
            if act.resolved:
                continue
            job = self._cancel_or_timeout(act, now)
            if job is not None:
                jobs.append(job)
        return jobs

