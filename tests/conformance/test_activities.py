"""Activities follow Temporal's semantics on both backends (DESIGN §4.2).

Every test runs a real worker and a real workflow. Activities report what they saw into ``LOG``
(keyed by workflow id) and signal progress through per-test events, so tests wait on events and
results, never on sleeps; the short sleeps inside activities are the work being timed out.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from dbosify import activity, workflow
from dbosify.client import Client, WorkflowFailureError, WorkflowHandle
from dbosify.common import RetryPolicy
from dbosify.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from dbosify.worker import Worker
from dbosify.workflow import ActivityCancellationType

# What activities saw, per workflow id.
LOG: dict[str, list[Any]] = {}


@dataclass
class Gates:
    """Events one test shares with its activities (threading events also serve sync ones)."""

    started: threading.Event = field(default_factory=threading.Event)
    resumed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    async_started: asyncio.Event = field(default_factory=asyncio.Event)
    async_resumed: asyncio.Event = field(default_factory=asyncio.Event)
    async_release: asyncio.Event = field(default_factory=asyncio.Event)
    async_finished: asyncio.Event = field(default_factory=asyncio.Event)


GATES: dict[str, Gates] = {}


def _wid() -> str:
    return activity.info().workflow_id


def _log(item: Any) -> None:
    LOG.setdefault(_wid(), []).append(item)


def _gates() -> Gates:
    return GATES[_wid()]


async def _wait_thread_event(event: threading.Event, timeout: float = 10.0) -> None:
    assert await asyncio.to_thread(event.wait, timeout), "the activity never got there"


async def _wait_logged(wid: str, entry: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while entry not in LOG[wid]:
        assert asyncio.get_running_loop().time() < deadline, f"{entry!r} never logged"
        await asyncio.sleep(0.01)


@pytest.fixture
def wid() -> Iterator[str]:
    """A unique workflow id with its log and gates, removed after the test."""
    key = f"wf-{uuid.uuid4()}"
    LOG[key] = []
    GATES[key] = Gates()
    yield key
    LOG.pop(key, None)
    GATES.pop(key, None)


# --- Data types --------------------------------------------------------------------------------


@dataclass
class Order:
    item: str
    quantity: int
    unit_price: float
    tags: list[str] = field(default_factory=list)


@dataclass
class Receipt:
    item: str
    total: float
    lines: list[str]
    summary: str = ""
    summarised_on_loop_thread: bool = True


@dataclass
class Call:
    """One activity call with its options (what the generic workflow below executes)."""

    activity: str
    args: list[Any] = field(default_factory=list)
    start_to_close_ms: int | None = 5000
    schedule_to_close_ms: int | None = None
    schedule_to_start_ms: int | None = None
    heartbeat_ms: int | None = None
    task_queue: str | None = None
    initial_ms: int = 20
    backoff: float = 2.0
    maximum_interval_ms: int | None = None
    maximum_attempts: int = 0
    non_retryable: list[str] = field(default_factory=list)


def _ms(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(milliseconds=value)


# --- Activities ----------------------------------------------------------------------------------


@activity.defn
async def price(order: Order) -> Receipt:
    lines = [f"{order.quantity} x {order.item} @ {order.unit_price:.2f}"] + \
        [f"tag {t}" for t in order.tags]
    return Receipt(order.item, round(order.quantity * order.unit_price, 2), lines)


@activity.defn
def summarise(receipt: Receipt) -> Receipt:
    receipt.summary = f"{receipt.item}: {receipt.total:.2f} ({len(receipt.lines)} lines)"
    receipt.summarised_on_loop_thread = threading.current_thread() is threading.main_thread()
    return receipt


@activity.defn
async def flaky(succeed_at: int) -> int:
    """Fails (retryably) until attempt ``succeed_at``; logs (attempt, start time)."""
    attempt = activity.info().attempt
    _log((attempt, time.monotonic()))
    if attempt < succeed_at:
        raise ApplicationError(f"attempt {attempt} failed", {"attempt": attempt}, type="Flaky")
    return attempt


@activity.defn
async def always_fails(error_type: str) -> None:
    attempt = activity.info().attempt
    _log(attempt)
    raise ApplicationError("boom", {"attempt": attempt}, type=error_type)


@activity.defn
async def raises_value_error() -> None:
    _log(activity.info().attempt)
    raise ValueError("bad input")


@activity.defn
async def refuses() -> None:
    _log(activity.info().attempt)
    raise ApplicationError("card declined", "4242", {"code": 51}, type="Declined",
                           non_retryable=True)


@activity.defn
async def retry_later(delay_ms: int) -> int:
    attempt = activity.info().attempt
    _log((attempt, time.monotonic()))
    if attempt == 1:
        raise ApplicationError("not yet", type="NotYet",
                               next_retry_delay=timedelta(milliseconds=delay_ms))
    return attempt


@activity.defn
async def hangs_first(_: int) -> int:
    """Attempt 1 never ends (until cancelled); later attempts return their number."""
    attempt = activity.info().attempt
    if attempt > 1:
        _log(("returned", attempt))
        return attempt
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        details = activity.cancellation_details()
        _log(("cancelled", attempt, details is not None and details.timed_out))
        raise
    raise AssertionError("unreachable")


@activity.defn
async def fails_then_hangs() -> None:
    """Attempt 1 fails retryably at once; attempt 2 never ends."""
    attempt = activity.info().attempt
    _log(attempt)
    if attempt == 1:
        raise ApplicationError("first attempt fails", type="Flaky")
    await asyncio.Event().wait()


@activity.defn
async def heartbeat_then_hang() -> None:
    """Heartbeats ``p<attempt>`` then stops heartbeating (its heartbeat timeout fires)."""
    info = activity.info()
    _log(("attempt", info.attempt, list(info.heartbeat_details)))
    activity.heartbeat(f"p{info.attempt}")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _log(("cancelled", info.attempt))
        raise


@activity.defn
async def progress_async() -> list[Any]:
    info = activity.info()
    _log(("attempt", info.attempt, list(info.heartbeat_details)))
    if info.attempt == 1:
        for step in range(3):
            activity.heartbeat({"step": step})
            await asyncio.sleep(0)
        raise ApplicationError("crashed after step 2", type="Crash")
    return list(info.heartbeat_details)


@activity.defn
def progress_sync() -> list[Any]:
    info = activity.info()
    _log(("attempt", info.attempt, list(info.heartbeat_details)))
    if info.attempt == 1:
        for step in range(3):
            activity.heartbeat({"step": step})
        raise ApplicationError("crashed after step 2", type="Crash")
    return list(info.heartbeat_details)


@activity.defn
async def say_hello(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn(name="late_activity")
async def late_activity() -> int:
    return activity.info().attempt


@activity.defn
async def note(text: str) -> None:
    _log(text)
    gates = _gates()
    gates.resumed.set()
    gates.async_resumed.set()


@activity.defn
async def cancellable_async(cleanup: str) -> str:
    """Runs until cancelled; its cleanup either waits for the workflow to resume (``wait``) or
    takes a moment of work (``work``); ``ignore`` means it never expects a cancel."""
    gates = _gates()
    _log("started")
    gates.async_started.set()
    gates.started.set()
    try:
        await gates.async_release.wait()
    except asyncio.CancelledError:
        _log("cancelled")
        if cleanup == "wait":
            await asyncio.wait_for(gates.async_resumed.wait(), 5)
        else:
            await asyncio.sleep(0.2)  # The cleanup's own work.
        _log("cleanup-done")
        raise
    _log(("finished", activity.is_cancelled()))
    gates.async_finished.set()
    return "finished"


@activity.defn
def cancellable_sync(cleanup: str) -> str:
    """The sync twin: sees cancellation at ``heartbeat()`` (as an exception raised in its
    thread) and through ``is_cancelled()``."""
    gates = _gates()
    _log("started")
    gates.started.set()
    try:
        while not gates.release.is_set():
            activity.heartbeat()
            time.sleep(0.005)
    except CancelledError:
        _log(("cancelled", activity.is_cancelled()))
        if cleanup == "wait":
            assert gates.resumed.wait(5)
        else:
            time.sleep(0.2)  # The cleanup's own work.
        _log("cleanup-done")
        raise
    _log(("finished", activity.is_cancelled()))
    gates.finished.set()
    return "finished"


@activity.defn(no_thread_cancel_exception=True)
def polls_is_cancelled() -> str:
    gates = _gates()
    gates.started.set()
    while not activity.is_cancelled():
        activity.heartbeat()
        time.sleep(0.005)
    _log("saw is_cancelled")
    raise CancelledError("stopping as asked")


@activity.defn
async def finishes_on_shutdown() -> str:
    """Waits for the worker to shut down, then finishes its work normally."""
    gates = _gates()
    _log(("started", activity.info().attempt))
    gates.async_started.set()
    await activity.wait_for_worker_shutdown()
    _log(("shutdown seen", activity.is_worker_shutdown(), activity.is_cancelled()))
    await asyncio.sleep(0.05)  # Finishing up, within the grace period.
    return "finished in the grace period"


@activity.defn
async def interrupted_by_shutdown() -> str:
    gates = _gates()
    attempt = activity.info().attempt
    _log(("started", attempt))
    if attempt > 1 or LOG[_wid()].count(("started", 1)) > 1:
        return f"done on a new worker, attempt {attempt}"
    gates.async_started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        details = activity.cancellation_details()
        _log(("cancelled", activity.is_worker_shutdown(),
              details is not None and details.worker_shutdown))
        raise
    raise AssertionError("unreachable")


# --- Workflows -----------------------------------------------------------------------------------


@workflow.defn
class Checkout:
    @workflow.run
    async def run(self, order: Order) -> Receipt:
        receipt = await workflow.execute_activity(price, order,
                                                  start_to_close_timeout=timedelta(seconds=10))
        assert isinstance(receipt, Receipt)
        return await workflow.execute_activity(summarise, receipt,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class RunOne:
    """Executes one activity call as described by a :class:`Call`."""

    @workflow.run
    async def run(self, call: Call) -> Any:
        return await workflow.execute_activity(
            call.activity, args=call.args,
            task_queue=call.task_queue,
            start_to_close_timeout=_ms(call.start_to_close_ms),
            schedule_to_close_timeout=_ms(call.schedule_to_close_ms),
            schedule_to_start_timeout=_ms(call.schedule_to_start_ms),
            heartbeat_timeout=_ms(call.heartbeat_ms),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=call.initial_ms),
                backoff_coefficient=call.backoff,
                maximum_interval=_ms(call.maximum_interval_ms),
                maximum_attempts=call.maximum_attempts,
                non_retryable_error_types=call.non_retryable),
        )


@dataclass
class CancelCase:
    activity: str
    cancellation_type: str
    cleanup: str = "work"


@workflow.defn
class CancelOne:
    """Starts an activity, cancels its handle when signalled, notes when it resumes."""

    def __init__(self) -> None:
        self.cancel_now = False

    @workflow.signal
    def cancel_activity(self) -> None:
        self.cancel_now = True

    @workflow.run
    async def run(self, case: CancelCase) -> str:
        args = [] if case.activity == "polls_is_cancelled" else [case.cleanup]
        handle = workflow.start_activity(
            case.activity, args=args, start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=ActivityCancellationType[case.cancellation_type])
        await workflow.wait_condition(lambda: self.cancel_now)
        handle.cancel()
        try:
            outcome = f"completed: {await handle}"
        except ActivityError as err:
            outcome = f"{type(err.cause).__name__} ({err.retry_state and err.retry_state.name})"
        await workflow.execute_activity(note, "workflow-resumed",
                                        start_to_close_timeout=timedelta(seconds=10))
        return outcome


WORKFLOWS = [Checkout, RunOne, CancelOne]
ACTIVITIES = [price, summarise, flaky, always_fails, raises_value_error, refuses, retry_later,
              hangs_first, fails_then_hangs, heartbeat_then_hang, progress_async, progress_sync,
              note, cancellable_async, cancellable_sync, polls_is_cancelled]


def _worker(client: Client, activities: Sequence[Any] = ACTIVITIES, *, queue: str = "q",
            **options: Any) -> Worker:
    return Worker(client, task_queue=queue, workflows=WORKFLOWS, activities=activities,
                  activity_executor=ThreadPoolExecutor(max_workers=8), **options)


async def _run(client: Client, call: Call, wid: str) -> Any:
    async with _worker(client):
        return await client.execute_workflow(RunOne.run, call, id=wid, task_queue="q")


async def _failure(client: Client, call: Call, wid: str) -> ActivityError:
    """Run the call, expecting the workflow to fail with an activity error; return it."""
    with pytest.raises(WorkflowFailureError) as info:
        await _run(client, call, wid)
    cause = info.value.cause
    assert isinstance(cause, ActivityError), cause
    assert cause.activity_type == call.activity
    return cause


# --- 1. Async and sync activities, dataclass arguments and results ----------------------------


async def test_async_and_sync_activities_with_dataclasses(client: Client, wid: str) -> None:
    order = Order("widget", 3, 2.5, tags=["gift"])
    async with _worker(client):
        result = await client.execute_workflow(Checkout.run, order, id=wid, task_queue="q")
    assert isinstance(result, Receipt)
    assert result.item == "widget" and result.total == 7.5
    assert result.lines == ["3 x widget @ 2.50", "tag gift"]
    assert result.summary == "widget: 7.50 (2 lines)"
    assert result.summarised_on_loop_thread is False  # The sync activity ran in the pool.


async def test_sync_activity_gets_a_default_pool(client: Client, wid: str) -> None:
    """Unlike temporalio (which refuses), a sync activity with no activity_executor runs in a
    thread pool of the worker's own (issue 9 §2: notebook users need not know executors)."""
    order = Order("widget", 1, 2.0)
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        result = await client.execute_workflow(Checkout.run, order, id=wid, task_queue="q")
    assert result.summarised_on_loop_thread is False


# --- 2. Retry policy ---------------------------------------------------------------------------


async def test_retry_backoff_and_attempt_numbers(client: Client, wid: str) -> None:
    call = Call("flaky", [4], initial_ms=100, backoff=3.0, maximum_interval_ms=400,
                maximum_attempts=5)
    assert await _run(client, call, wid) == 4
    attempts = [a for a, _ in LOG[wid]]
    assert attempts == [1, 2, 3, 4]
    starts = [t for _, t in LOG[wid]]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 100 ms, 100 * 3 = 300 ms, then 900 ms capped at the 400 ms maximum interval.
    for gap, expected in zip(gaps, [0.1, 0.3, 0.4], strict=True):
        assert expected - 0.02 <= gap <= expected + 0.25, (gaps, expected)


async def test_history_shows_the_final_attempt_and_the_failure_before_it(client: Client,
                                                                        wid: str) -> None:
    assert await _run(client, Call("flaky", [3], initial_ms=50, maximum_attempts=5), wid) == 3
    history = await client.get_workflow_handle(wid).fetch_history()
    started = [e.activity_task_started_event_attributes for e in history.events
               if e.HasField("activity_task_started_event_attributes")]
    assert [a.attempt for a in started] == [3]
    # As Temporal: the started event of a retried activity carries the previous attempt's failure.
    assert started[0].last_failure.message == "attempt 2 failed"
    assert started[0].last_failure.application_failure_info.type == "Flaky"


async def test_maximum_attempts_reached(client: Client, wid: str) -> None:
    err = await _failure(client, Call("always_fails", ["Flaky"], maximum_attempts=3), wid)
    assert LOG[wid] == [1, 2, 3]
    assert err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    app = err.cause
    assert isinstance(app, ApplicationError)
    assert app.type == "Flaky" and app.message == "boom" and app.details == ({"attempt": 3},)
    assert not app.non_retryable


@pytest.mark.parametrize(("activity_name", "args", "error_type"), [
    ("always_fails", ["Fatal"], "Fatal"),
    ("raises_value_error", [], "ValueError"),  # A plain exception's type is its class name.
])
async def test_non_retryable_error_types(client: Client, wid: str, activity_name: str,
                                         args: list[Any], error_type: str) -> None:
    call = Call(activity_name, args, maximum_attempts=5, non_retryable=["Other", error_type])
    err = await _failure(client, call, wid)
    assert LOG[wid] == [1]
    assert err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    assert isinstance(err.cause, ApplicationError) and err.cause.type == error_type


async def test_application_error_non_retryable(client: Client, wid: str) -> None:
    err = await _failure(client, Call("refuses", maximum_attempts=5), wid)
    assert LOG[wid] == [1]
    assert err.retry_state == RetryState.NON_RETRYABLE_FAILURE
    app = err.cause
    assert isinstance(app, ApplicationError)
    assert app.non_retryable and app.type == "Declined" and app.message == "card declined"
    assert app.details == ("4242", {"code": 51})


async def test_next_retry_delay_overrides_the_policy(client: Client, wid: str) -> None:
    # The policy alone would wait 10 s before attempt 2; the error asks for 150 ms.
    call = Call("retry_later", [150], initial_ms=10_000, maximum_attempts=3)
    assert await _run(client, call, wid) == 2
    (first, t1), (second, t2) = LOG[wid]
    assert (first, second) == (1, 2)
    assert 0.13 <= t2 - t1 <= 2.0, t2 - t1


# --- 3. Timeouts -------------------------------------------------------------------------------


async def test_start_to_close_timeout_is_retried(client: Client, wid: str) -> None:
    call = Call("hangs_first", [0], start_to_close_ms=300, maximum_attempts=3)
    assert await _run(client, call, wid) == 2
    assert LOG[wid] == [("cancelled", 1, True), ("returned", 2)]


async def test_start_to_close_timeout_final(client: Client, wid: str) -> None:
    err = await _failure(client, Call("hangs_first", [0], start_to_close_ms=300,
                                      maximum_attempts=1), wid)
    assert err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    timeout = err.cause
    assert isinstance(timeout, TimeoutError)
    assert timeout.type == TimeoutType.START_TO_CLOSE


async def test_schedule_to_close_timeout(client: Client, wid: str) -> None:
    # Attempt 1 fails at once and is retried; attempt 2 hangs past the whole 600 ms budget.
    started = time.monotonic()
    err = await _failure(client, Call("fails_then_hangs", start_to_close_ms=None,
                                      schedule_to_close_ms=600), wid)
    elapsed = time.monotonic() - started
    assert LOG[wid] == [1, 2]  # No attempt after the budget ran out.
    timeout = err.cause
    assert isinstance(timeout, TimeoutError)
    assert timeout.type == TimeoutType.SCHEDULE_TO_CLOSE
    # Temporal reports TIMEOUT when the attempt's own timeout ends the budget, and
    # NON_RETRYABLE_FAILURE when the schedule-to-close timer fires first.
    assert err.retry_state in (RetryState.TIMEOUT, RetryState.NON_RETRYABLE_FAILURE)
    assert 0.55 <= elapsed < 5


async def test_heartbeat_timeout(client: Client, wid: str) -> None:
    call = Call("heartbeat_then_hang", start_to_close_ms=10_000, heartbeat_ms=300,
                maximum_attempts=2)
    err = await _failure(client, call, wid)
    assert LOG[wid] == [("attempt", 1, []), ("cancelled", 1),
                        ("attempt", 2, ["p1"]), ("cancelled", 2)]
    assert err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    timeout = err.cause
    assert isinstance(timeout, TimeoutError)
    assert timeout.type == TimeoutType.HEARTBEAT
    assert list(timeout.last_heartbeat_details) == ["p2"]


async def test_schedule_to_start_timeout(client: Client, wid: str) -> None:
    call = Call("say_hello", ["nobody"], task_queue="no-worker-serves-this",
                schedule_to_start_ms=300)
    started = time.monotonic()
    err = await _failure(client, call, wid)
    assert 0.28 <= time.monotonic() - started < 3  # At its deadline, not at some later poll.
    timeout = err.cause
    assert isinstance(timeout, TimeoutError)
    assert timeout.type == TimeoutType.SCHEDULE_TO_START
    # Temporal never retries a schedule-to-start timeout: it is a non-retryable failure.
    assert err.retry_state == RetryState.NON_RETRYABLE_FAILURE


# --- 4. Heartbeat details survive into the next attempt ----------------------------------------


@pytest.mark.parametrize("activity_name", ["progress_async", "progress_sync"])
async def test_heartbeat_details_reach_the_next_attempt(client: Client, wid: str,
                                                        activity_name: str) -> None:
    result = await _run(client, Call(activity_name, maximum_attempts=2), wid)
    assert result == [{"step": 2}]
    assert LOG[wid] == [("attempt", 1, []), ("attempt", 2, [{"step": 2}])]


# --- 5. Cancellation ---------------------------------------------------------------------------


async def _cancel_case(client: Client, wid: str, case: CancelCase) -> tuple[str, list[Any]]:
    gates = GATES[wid]
    async with _worker(client):
        handle: WorkflowHandle[Any, str] = await client.start_workflow(
            CancelOne.run, case, id=wid, task_queue="q")
        await _wait_thread_event(gates.started)
        await handle.signal(CancelOne.cancel_activity)
        result = await handle.result()
        if case.cancellation_type == "TRY_CANCEL":
            # The workflow did not wait for the activity, so the activity may see its
            # cancellation after the result: wait for its cleanup (before the worker's shutdown
            # would cancel it anyway).
            await _wait_logged(wid, "cleanup-done")
        log_at_result = list(LOG[wid])
        if case.cancellation_type == "ABANDON":
            gates.release.set()
            gates.async_release.set()
            if case.activity == "cancellable_sync":
                await _wait_thread_event(gates.finished)
            else:
                await asyncio.wait_for(gates.async_finished.wait(), 10)
    return result, log_at_result


@pytest.mark.parametrize("activity_name", ["cancellable_async", "cancellable_sync"])
async def test_cancel_try_cancel(client: Client, wid: str, activity_name: str) -> None:
    # The activity's cleanup only ends once the workflow has resumed: the workflow must not wait.
    result, log = await _cancel_case(client, wid, CancelCase(activity_name, "TRY_CANCEL", "wait"))
    assert result == "CancelledError (CANCEL_REQUESTED)"
    cancelled = "cancelled" if activity_name == "cancellable_async" else ("cancelled", True)
    # TRY_CANCEL resolves at once: the activity sees its cancellation, but in no fixed order
    # with the workflow resuming (its cleanup cannot end before that, so it did not wait).
    assert log[0] == "started"
    assert sorted(map(str, log[1:3])) == sorted(map(str, [cancelled, "workflow-resumed"]))


@pytest.mark.parametrize("activity_name", ["cancellable_async", "cancellable_sync"])
async def test_cancel_wait_cancellation_completed(client: Client, wid: str,
                                                  activity_name: str) -> None:
    case = CancelCase(activity_name, "WAIT_CANCELLATION_COMPLETED", "work")
    result, log = await _cancel_case(client, wid, case)
    assert result == "CancelledError (CANCEL_REQUESTED)"
    cancelled = "cancelled" if activity_name == "cancellable_async" else ("cancelled", True)
    # The workflow resumed only after the activity's cleanup finished.
    assert log == ["started", cancelled, "cleanup-done", "workflow-resumed"]


async def test_cancel_reaches_is_cancelled(client: Client, wid: str) -> None:
    case = CancelCase("polls_is_cancelled", "WAIT_CANCELLATION_COMPLETED")
    result, log = await _cancel_case(client, wid, case)
    assert result == "CancelledError (CANCEL_REQUESTED)"
    assert log == ["saw is_cancelled", "workflow-resumed"]


@pytest.mark.parametrize("activity_name", ["cancellable_async", "cancellable_sync"])
async def test_cancel_abandon(client: Client, wid: str, activity_name: str) -> None:
    result, log = await _cancel_case(client, wid, CancelCase(activity_name, "ABANDON"))
    assert result == "CancelledError (CANCEL_REQUESTED)"
    assert log == ["started", "workflow-resumed"]  # The workflow went on at once...
    assert LOG[wid][2:] == [("finished", False)]  # ...and the activity was never cancelled.


# --- 6. Worker shutdown ------------------------------------------------------------------------


async def test_graceful_shutdown_lets_the_activity_finish(client: Client, wid: str) -> None:
    gates = GATES[wid]
    acts = [*ACTIVITIES, finishes_on_shutdown]
    worker = _worker(client, acts, graceful_shutdown_timeout=timedelta(seconds=10))
    async with worker:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            RunOne.run, Call("finishes_on_shutdown", maximum_attempts=1), id=wid,
            task_queue="q")
        await asyncio.wait_for(gates.async_started.wait(), 10)
        await worker.shutdown()
    assert LOG[wid] == [("started", 1), ("shutdown seen", True, False)]
    async with _worker(client, acts):
        assert await handle.result() == "finished in the grace period"
    assert LOG[wid] == [("started", 1), ("shutdown seen", True, False)]  # Not run again.


async def test_shutdown_without_grace_cancels_and_the_run_continues(client: Client,
                                                                    wid: str) -> None:
    gates = GATES[wid]
    acts = [*ACTIVITIES, interrupted_by_shutdown]
    worker = _worker(client, acts)
    async with worker:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            RunOne.run, Call("interrupted_by_shutdown", maximum_attempts=5), id=wid,
            task_queue="q")
        await asyncio.wait_for(gates.async_started.wait(), 10)
        await worker.shutdown()
    assert LOG[wid] == [("started", 1), ("cancelled", True, True)]
    async with _worker(client, acts):
        result = await handle.result()
    assert result.startswith("done on a new worker")
    assert LOG[wid][-1][0] == "started", LOG[wid]


# --- 7. Activity type not registered -----------------------------------------------------------


async def test_unregistered_activity_fails_with_not_found(client: Client, wid: str) -> None:
    err = await _failure(client, Call("late_activity", maximum_attempts=1), wid)
    assert err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    app = err.cause
    assert isinstance(app, ApplicationError)
    assert app.type == "NotFoundError"
    assert "late_activity" in app.message
    assert "price" in app.message  # It names the activities the worker has.


async def test_unregistered_activity_is_retried_until_a_worker_has_it(client: Client,
                                                                      wid: str) -> None:
    async with _worker(client):
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            RunOne.run, Call("late_activity", initial_ms=50, backoff=1.0), id=wid,
            task_queue="q")
        # Not hanging silently: the attempts fail and are retried by the policy.
        for _ in range(200):
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= 3:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the unregistered activity was not retried")
        async with Worker(client, task_queue="q", activities=[late_activity]):
            attempt = await handle.result()
    assert attempt >= 3
