"""Running activity attempts with temporalio's own activity worker (DESIGN §4.2, §9.1).

temporalio's ``_ActivityWorker`` polls Core for activity tasks and reports completions; here
dbosify plays Core: :class:`ActivityRunner` hands it ``ActivityTask`` protos and receives the
completions, so activity context, ``heartbeat()``, ``info()``, cancellation delivery (async at the
next await, sync through ``heartbeat()``/``is_cancelled()``), interceptors and failure encoding are
temporalio's, exactly. What Core does and the SDK does not is here: start-to-close and heartbeat
timeouts, heartbeat throttling, and concurrency limits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.exceptions
import temporalio.worker
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import TimeoutType
from temporalio.bridge.proto import ActivityHeartbeat, ActivityTaskCompletion
from temporalio.bridge.proto.activity_result import ActivityExecutionResult
from temporalio.bridge.proto.activity_task import ActivityCancelReason, ActivityTask, Start

# Private: the activity worker temporalio's Worker runs. tests/_runtime/test_activities.py fails
# loudly if its constructor or its Core-facing calls change (temporalio is pinned, DESIGN §9.1).
from temporalio.worker._activity import _ActivityWorker

from dbosify._store import _clock

logger = logging.getLogger("dbosify")

# Core sends a heartbeat at most every 80 % of the heartbeat timeout, and every 30 s without one.
_HEARTBEAT_THROTTLE_RATIO = 0.8
_DEFAULT_HEARTBEAT_THROTTLE_S = 30.0
_MAX_HEARTBEAT_THROTTLE_S = 60.0


def _timeout_clock() -> float:
    """Seconds for start-to-close and heartbeat timeouts: monotonic, plus what a time-skipping
    test environment skipped (dbosify._store._clock)."""
    return time.monotonic() + _clock.skipped_ms() / 1000


def _poll_shutdown_error() -> BaseException:
    # temporalio's activity worker stops polling on this exact type.
    import temporalio.bridge.worker as bridge_worker

    error: BaseException = bridge_worker.PollShutdownError()  # type: ignore[attr-defined]
    return error


@dataclass
class AttemptOutcome:
    """How an activity attempt ended."""

    result: ActivityExecutionResult
    started_ms: int
    heartbeat_details: Payloads = field(default_factory=Payloads)
    timed_out: TimeoutType.ValueType | None = None
    """Set when the attempt exceeded its start-to-close or heartbeat timeout."""
    identity: str = ""
    """The worker that ran the attempt, when it is not the run's own process."""


@dataclass
class _Attempt:
    token: bytes
    start: Start
    future: asyncio.Future[AttemptOutcome]
    on_heartbeat: Callable[[Payloads], None] | None
    started_ms: int = 0
    last_heartbeat: float = 0.0
    heartbeat_details: Payloads = field(default_factory=Payloads)
    watchdog: asyncio.TimerHandle | None = None
    began: float = 0.0
    last_saved: float = 0.0
    trailing_save: asyncio.TimerHandle | None = None


class _CoreBridge:
    """The part of Core's worker that temporalio's activity worker calls."""

    def __init__(self, runner: ActivityRunner) -> None:
        self._runner = runner
        self.queue: asyncio.Queue[ActivityTask | None] = asyncio.Queue()

    async def poll_activity_task(self) -> ActivityTask:
        task = await self.queue.get()
        if task is None:
            raise _poll_shutdown_error()
        return task

    async def complete_activity_task(self, completion: ActivityTaskCompletion) -> None:
        self._runner._completed(completion.task_token, completion.result)

    def record_activity_heartbeat(self, heartbeat: ActivityHeartbeat) -> None:
        self._runner._heartbeat(heartbeat.task_token, heartbeat.details)


class ActivityRunner:
    """Executes the activity attempts of one worker (one task queue) in this process."""

    def __init__(
        self,
        *,
        task_queue: str,
        activities: Sequence[Callable[..., Any]],
        activity_executor: concurrent.futures.Executor | None,
        data_converter: temporalio.converter.DataConverter,
        interceptors: Sequence[temporalio.worker.Interceptor],
        client: temporalio.client.Client,
        max_concurrent: int,
        shared_state_manager: temporalio.worker.SharedStateManager | None = None,
    ) -> None:
        self.task_queue = task_queue
        self._bridge = _CoreBridge(self)
        self._worker = _ActivityWorker(
            bridge_worker=lambda: self._bridge,  # type: ignore[arg-type, return-value]
            task_queue=task_queue,
            activities=activities,
            activity_executor=activity_executor,
            # Sync activities in a ProcessPoolExecutor heartbeat and learn of cancellation
            # through it, as under temporalio's Worker.
            shared_state_manager=shared_state_manager,
            data_converter=data_converter,
            interceptors=interceptors,
            metric_meter=temporalio.common.MetricMeter.noop,
            client=client,
            encode_headers=False,
        )
        self.names = frozenset(self._worker._activities)
        self.has_dynamic = self._worker._dynamic_activity is not None
        self._attempts: dict[bytes, _Attempt] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._run_task: asyncio.Task[None] | None = None

    def serves(self, activity_type: str) -> bool:
        """Whether this worker registered the activity type (or a dynamic activity)."""
        return activity_type in self.names or self.has_dynamic

    def start(self) -> None:
        """Start polling; call on the worker's event loop."""
        # A fresh context: activity code must not see the DBOS workflow context of a run.
        self._run_task = asyncio.get_running_loop().create_task(
            self._worker.run(), context=contextvars.Context())

    @property
    def running(self) -> int:
        """Attempts in progress."""
        return len(self._attempts)

    async def execute(self, token: bytes, start: Start,
                      on_heartbeat: Callable[[Payloads], None] | None = None) -> AttemptOutcome:
        """Run one attempt to its end and return how it ended."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            attempt = _Attempt(token, start, loop.create_future(), on_heartbeat)
            attempt.started_ms = _clock.now_ms()
            attempt.last_heartbeat = _timeout_clock()
            attempt.heartbeat_details.CopyFrom(Payloads(payloads=start.heartbeat_details))
            start.started_time.FromMilliseconds(attempt.started_ms)
            self._attempts[token] = attempt
            attempt.began = _timeout_clock()
            self._watch(attempt)
            self._bridge.queue.put_nowait(ActivityTask(task_token=token, start=start))
            try:
                return await attempt.future
            finally:
                if attempt.watchdog is not None:
                    attempt.watchdog.cancel()
                if attempt.trailing_save is not None:
                    attempt.trailing_save.cancel()
                self._attempts.pop(token, None)

    def cancel(self, token: bytes, reason: ActivityCancelReason.ValueType) -> None:
        """Ask a running attempt to stop (it sees cancellation at its next await/heartbeat)."""
        if token not in self._attempts:
            return
        task = ActivityTask(task_token=token)
        task.cancel.reason = reason
        details = task.cancel.details
        if reason == ActivityCancelReason.TIMED_OUT:
            details.is_timed_out = True
        elif reason == ActivityCancelReason.WORKER_SHUTDOWN:
            details.is_worker_shutdown = True
        elif reason == ActivityCancelReason.NOT_FOUND:
            details.is_not_found = True  # Its run closed.
        else:
            details.is_cancelled = True
        self._bridge.queue.put_nowait(task)

    async def shutdown(self, graceful_timeout: float) -> None:
        """Stop taking attempts, let running ones finish for ``graceful_timeout`` seconds, then
        cancel them as a worker shutdown does in Temporal."""
        # As temporalio's Worker: activities see the shutdown (is_worker_shutdown(),
        # wait_for_worker_shutdown()) from its start, so they can finish within the grace period.
        self._worker.notify_shutdown()
        if self._attempts and graceful_timeout > 0:
            await asyncio.wait([a.future for a in self._attempts.values()],
                               timeout=graceful_timeout)
        for token in list(self._attempts):
            self.cancel(token, ActivityCancelReason.WORKER_SHUTDOWN)
        # temporalio's worker reads cancels (these, and timeouts' during the grace period) until
        # its poll returns: end the poll only after them.
        self._bridge.queue.put_nowait(None)
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)
        await self._worker.wait_all_completed()

    # Called by temporalio's activity worker through the bridge ---------------------------------

    def _completed(self, token: bytes, result: ActivityExecutionResult) -> None:
        attempt = self._attempts.get(token)
        if attempt is None or attempt.future.done():
            return  # Already timed out; a late completion is dropped, as Core drops it.
        attempt.future.set_result(AttemptOutcome(result, attempt.started_ms,
                                                 attempt.heartbeat_details))

    def _heartbeat(self, token: bytes, details: Sequence[Any]) -> None:
        attempt = self._attempts.get(token)
        if attempt is None:
            return
        attempt.last_heartbeat = _timeout_clock()
        if details:
            attempt.heartbeat_details = Payloads(payloads=details)
        if attempt.on_heartbeat is not None:
            # Throttled as Core throttles heartbeats, so a chatty activity does not hammer the
            # database; the in-memory details above are always the latest.
            hb = attempt.start.heartbeat_timeout.ToTimedelta().total_seconds()
            throttle = min(hb * _HEARTBEAT_THROTTLE_RATIO, _MAX_HEARTBEAT_THROTTLE_S) if hb \
                else _DEFAULT_HEARTBEAT_THROTTLE_S
            now = time.monotonic()
            if attempt.last_saved == 0.0 or now - attempt.last_saved >= throttle:
                self._save_heartbeat(attempt)
            elif attempt.trailing_save is None:
                # As Core: the latest details are still sent once the interval is over.
                attempt.trailing_save = asyncio.get_running_loop().call_later(
                    attempt.last_saved + throttle - now, self._save_heartbeat, attempt)

    def _save_heartbeat(self, attempt: _Attempt) -> None:
        attempt.trailing_save = None
        if attempt.on_heartbeat is not None and not attempt.future.done():
            attempt.last_saved = time.monotonic()
            attempt.on_heartbeat(attempt.heartbeat_details)

    def clock_skipped(self) -> None:
        """The engine's clock jumped (a time-skipping test environment): hold every running
        attempt's timeouts against the new time now."""
        for attempt in list(self._attempts.values()):
            if attempt.watchdog is not None:
                attempt.watchdog.cancel()
            self._watch(attempt)

    def _watch(self, attempt: _Attempt) -> None:
        """Arm (or re-arm) the attempt's timeout timer; a timer, not a task per attempt."""
        attempt.watchdog = None
        if attempt.future.done():
            return
        start = attempt.start
        deadlines: list[tuple[float, TimeoutType.ValueType]] = []
        if start.HasField("start_to_close_timeout"):
            stc = start.start_to_close_timeout.ToTimedelta().total_seconds()
            if stc > 0:
                deadlines.append((attempt.began + stc, TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE))
        if start.HasField("heartbeat_timeout"):
            hb = start.heartbeat_timeout.ToTimedelta().total_seconds()
            if hb > 0:
                deadlines.append((attempt.last_heartbeat + hb, TimeoutType.TIMEOUT_TYPE_HEARTBEAT))
        if not deadlines:
            return
        when, kind = min(deadlines)
        delay = when - _timeout_clock()
        if delay > 0:
            # A heartbeat moves its deadline: look again at the earlier of the two.
            attempt.watchdog = asyncio.get_running_loop().call_later(delay, self._watch, attempt)
            return
        self.cancel(attempt.token, ActivityCancelReason.TIMED_OUT)
        failure = ActivityExecutionResult()
        failure.failed.failure.message = "activity " + (
            "StartToClose" if kind == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE else "Heartbeat"
        ) + " timeout"
        failure.failed.failure.timeout_failure_info.timeout_type = kind
        failure.failed.failure.timeout_failure_info.last_heartbeat_details.CopyFrom(
            attempt.heartbeat_details)
        attempt.future.set_result(AttemptOutcome(failure, attempt.started_ms,
                                                 attempt.heartbeat_details, timed_out=kind))
