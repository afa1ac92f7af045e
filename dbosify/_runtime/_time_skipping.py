"""Time skipping for tests: the engine's clock jumps to the next deadline whenever every run of
this process waits only on time (temporalio's time-skipping test server semantics, V1).

A run "waits only on time" when its driver is idle (everything handed to it is recorded) with
nothing new to act on, or waits for its delayed start; no run is starting and no activity
attempt is running here. Then the clock (:mod:`dbosify._store._clock`) moves to the earliest
deadline any run has -- a timer, an activity retry or timeout, a run timeout, a delayed start
(start delay, retry or cron backoff) -- or a schedule's next due time, and the runs are woken to
act on it. Skipping happens only while unlocked: while a test awaits a workflow's result
(automatic), or during :meth:`TimeSkipper.sleep`.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from dbosify._runtime._scheduler import scheduler_of
from dbosify._store import _clock
from dbosify._store import _schedules as q

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

_CHECK_S = 0.005
"""How often (real time) the skipper looks whether everything is waiting."""
_QUIET_CHECKS = 3
"""Consecutive quiet looks before a skip: an event being handed over between two runs (a
child's result, a signal from a workflow) must not be mistaken for rest."""


class TimeSkipper:
    """Skips the clock of one process's engine (one per time-skipping environment)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.unlocked = 0
        self._task: asyncio.Task[None] | None = None
        # Quiet looks in a row, counted apart for the automatic skips and for sleep().
        self._quiet = {True: 0, False: 0}

    # Locking --------------------------------------------------------------------------------

    def unlock(self) -> None:
        """Allow skipping (nested: each unlock needs a lock)."""
        self.unlocked += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def lock(self) -> None:
        self.unlocked = max(self.unlocked - 1, 0)

    def stop(self) -> None:
        self.unlocked = 0
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # Skipping -------------------------------------------------------------------------------

    def _busy(self, activities_hold: bool = True) -> bool:
        process = self.process
        if process.fresh_runs or scheduler_of(process).firing:
            return True
        for driver in list(process.drivers.values()):
            if driver.waiting_to_start and not driver.wake.is_set():
                continue  # Waits for its execution time only (events wait with it).
            messages = driver.message_part
            if not driver.idle or driver.wake.is_set() or messages.inbox_dirty \
                    or driver.pending_jobs or driver.outcomes or messages.pending_updates:
                return True
        if not activities_hold:
            return False
        for worker in process.workers:
            runner = getattr(worker, "activity_runner", None)
            if runner is not None and runner.running:
                return True
        return bool(getattr(process, "_remote_attempts", None))

    async def _next_deadline(self) -> int | None:
        now = _clock.now_ms()
        deadlines: list[int] = []
        for driver in list(self.process.drivers.values()):
            if driver.waiting_to_start and driver.row is not None:
                deadlines.append(driver.row.execution_time_ms)
                continue
            seconds = driver._seconds_to_next_deadline(now, math.inf)
            if seconds != math.inf:
                deadlines.append(now + math.ceil(seconds * 1000))

        def earliest_schedule() -> int | None:
            with self.process.store.engine.connect() as conn:
                return q.earliest_due(conn)[0]

        due = await self.process.db_call(earliest_schedule)
        if due is not None:
            deadlines.append(due)
        return min(deadlines) if deadlines else None

    async def step(self, limit_ms: int | None = None, activities_hold: bool = True) -> bool:
        """Skip once if everything waits on time: to the next deadline (at most ``limit_ms``).
        ``activities_hold``: a running activity attempt stops the clock from skipping. True if
        the clock moved."""
        if self._busy(activities_hold):
            self._quiet[activities_hold] = 0
            return False
        self._quiet[activities_hold] += 1
        if self._quiet[activities_hold] < _QUIET_CHECKS:
            return False
        self._quiet[activities_hold] = 0
        target = await self._next_deadline()
        if limit_ms is not None:
            target = limit_ms if target is None else min(target, limit_ms)
        now = _clock.now_ms()
        if target is None or target <= now or self._busy(activities_hold):
            return False
        _clock.skip(target - now)
        self._wake_all()
        return True

    def _wake_all(self) -> None:
        for driver in list(self.process.drivers.values()):
            driver.wake.set()
        for worker in self.process.workers:
            runner = getattr(worker, "activity_runner", None)
            if runner is not None:
                runner.clock_skipped()  # Attempts running here time out on the new clock.
        if self.process.workers:
            scheduler_of(self.process).wake()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_CHECK_S)
            if self.unlocked > 0:
                await self.step()

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on the clock, skipping where every run waits (and in real
        time where one works), so timers in between fire in order. Running activities do not
        hold the clock here: an activity may sleep past its own timeout, as on Temporal's test
        server, where this sleep releases the activity's hold."""
        target = _clock.now_ms() + int(seconds * 1000)
        while _clock.now_ms() < target:
            if not await self.step(limit_ms=target, activities_hold=False):
                await asyncio.sleep(_CHECK_S)
