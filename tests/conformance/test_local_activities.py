"""Local activities follow Core's rules on both backends (issue 9 §4).

Each test runs a real worker and workflow; activities report what they saw into ``LOG`` (by
workflow id). The history of every run is replayed by temporalio's own ``Replayer``: the markers
dbosify writes must be the ones Core reads back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History

from dbosify import activity, workflow
from dbosify._runtime._replay import replay_history
from dbosify.client import Client, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import ActivityError, ApplicationError, TimeoutError
from dbosify.worker import Replayer, UnsandboxedWorkflowRunner, Worker
from dbosify.workflow import ActivityCancellationType

LOG: dict[str, list[Any]] = {}
Q = "local-q"


def _wid() -> str:
    return activity.info().workflow_id


def _log(item: Any) -> None:
    LOG.setdefault(_wid(), []).append(item)


@pytest.fixture
def wid() -> Iterator[str]:
    key = f"la-{uuid.uuid4()}"
    LOG[key] = []
    yield key
    LOG.pop(key, None)


@dataclass
class LocalCall:
    activity: str
    args: list[Any] = field(default_factory=list)
    start_to_close_ms: int | None = 5000
    schedule_to_close_ms: int | None = None
    initial_ms: int = 20
    backoff: float = 2.0
    maximum_attempts: int = 0
    local_retry_threshold_ms: int | None = None
    cancel: str | None = None
    """Cancel the activity with this cancellation type once it has started."""


def _ms(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(milliseconds=value)


# --- Activities ----------------------------------------------------------------------------------


@activity.defn
async def greet(name: str) -> str:
    info = activity.info()
    _log(("greet", info.is_local, info.attempt))
    return f"Hello, {name}!"


@activity.defn
async def flaky(succeed_at: int) -> int:
    attempt = activity.info().attempt
    _log(attempt)
    if attempt < succeed_at:
        raise ApplicationError(f"attempt {attempt} failed", type="Flaky")
    return attempt


@activity.defn
async def refuses() -> None:
    _log(activity.info().attempt)
    raise ApplicationError("card declined", type="Declined", non_retryable=True)


@activity.defn
async def hangs_first(_: int) -> int:
    attempt = activity.info().attempt
    _log(attempt)
    if attempt > 1:
        return attempt
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@activity.defn
async def waits_for_cancel() -> str:
    _log("started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _log("cancelled")
        await asyncio.sleep(0.5)  # Cleanup the workflow waits for, or not.
        _log("cleanup-done")
        raise
    raise AssertionError("unreachable")


@activity.defn
async def until_started() -> None:
    """Returns once ``waits_for_cancel`` of the same workflow has logged that it started, so the
    cancellation always reaches a running activity however slow the machine is."""
    wid = activity.info().workflow_id
    while "started" not in LOG[wid]:
        await asyncio.sleep(0.01)


@activity.defn
async def slow(ms: int) -> int:
    _log(("slow", ms))
    await asyncio.sleep(ms / 1000)
    return ms


ACTIVITIES = [greet, flaky, refuses, hangs_first, waits_for_cancel, until_started, slow]


# --- Workflows -----------------------------------------------------------------------------------


@workflow.defn
class RunLocal:
    @workflow.run
    async def run(self, call: LocalCall) -> Any:
        policy = RetryPolicy(initial_interval=timedelta(milliseconds=call.initial_ms),
                             backoff_coefficient=call.backoff,
                             maximum_attempts=call.maximum_attempts)
        options: dict[str, Any] = dict(
            start_to_close_timeout=_ms(call.start_to_close_ms),
            schedule_to_close_timeout=_ms(call.schedule_to_close_ms),
            retry_policy=policy,
            local_retry_threshold=_ms(call.local_retry_threshold_ms),
        )
        if call.cancel is None:
            return await workflow.execute_local_activity(call.activity, args=call.args,
                                                         **options)
        handle = workflow.start_local_activity(
            call.activity, args=call.args,
            cancellation_type=ActivityCancellationType[call.cancel], **options)
        await workflow.execute_local_activity(until_started,
                                              start_to_close_timeout=timedelta(seconds=30))
        handle.cancel()
        try:
            await handle
        except ActivityError as err:
            return f"{type(err).__name__}/{type(err.cause).__name__}"
        return "not cancelled"


@workflow.defn
class TwoSteps:
    """A local activity, a timer, then another local activity with a normal one between."""

    @workflow.run
    async def run(self, name: str) -> list[str]:
        first = await workflow.execute_local_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=5))
        await workflow.sleep(0.05)
        second = await workflow.execute_activity(
            greet, "normal", start_to_close_timeout=timedelta(seconds=5))
        third = await workflow.execute_local_activity(
            greet, name + "2", start_to_close_timeout=timedelta(seconds=5))
        return [first, second, third]


@workflow.defn
class AcrossTasks:
    """A local activity still running when a timer fires and a signal comes: its result
    arrives in a later workflow task than the one that scheduled it."""

    def __init__(self) -> None:
        self.signals: list[str] = []

    @workflow.run
    async def run(self) -> list[Any]:
        handle = workflow.start_local_activity(slow, 600,
                                               start_to_close_timeout=timedelta(seconds=5))
        await workflow.sleep(0.05)
        await workflow.wait_condition(lambda: bool(self.signals))
        return [await handle, self.signals]

    @workflow.signal
    def poke(self, text: str) -> None:
        self.signals.append(text)


@workflow.defn
class Parallel:
    """Three local activities at once, then one more."""

    @workflow.run
    async def run(self) -> list[int]:
        opts: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=5)}
        first = await asyncio.gather(*(workflow.execute_local_activity(slow, ms, **opts)
                                       for ms in (120, 10, 60)))
        return [*first, await workflow.execute_local_activity(slow, 1, **opts)]


WORKFLOWS = [RunLocal, TwoSteps, AcrossTasks, Parallel]


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=WORKFLOWS, activities=ACTIVITIES)


async def _run(client: Client, call: LocalCall, wid: str) -> Any:
    async with _worker(client):
        return await client.execute_workflow(RunLocal.run, call, id=wid, task_queue=Q)


async def _failure(client: Client, call: LocalCall, wid: str) -> BaseException:
    with pytest.raises(WorkflowFailureError) as info:
        await _run(client, call, wid)
    assert info.value.cause is not None
    return info.value.cause


async def _history(client: Client, wid: str) -> History:
    """The run's history, once temporalio's Replayer and dbosify's event-by-event replay (the
    notebook's ``%replay``) have both replayed it without a divergence."""
    history = await client.get_workflow_handle(wid).fetch_history()
    await Replayer(workflows=WORKFLOWS, workflow_runner=UnsandboxedWorkflowRunner()
                   ).replay_workflow(history)
    started = history.events[0].workflow_execution_started_event_attributes
    workflow_cls = next(w for w in WORKFLOWS if w.__name__ == started.workflow_type.name)
    report = await replay_history(history.events, workflow_cls, workflow_id=wid)
    assert report.divergence is None, [(r.recorded, r.command, r.status, r.note)
                                       for r in report.rows]
    local_rows = [r for r in report.rows if r.recorded and "ScheduleLocalActivity" in r.recorded]
    assert local_rows and all(r.status == "match" for r in local_rows), local_rows
    proto = History()
    proto.events.extend(history.events)
    return proto


def _markers(history: History) -> list[tuple[dict[str, Any], Any]]:
    """(marker data, marker attributes) of each local activity marker."""
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            assert attrs.marker_name == "core_local_activity"
            found.append((json.loads(attrs.details["data"].payloads[0].data), attrs))
    return found


def _types(history: History) -> list[int]:
    return [e.event_type for e in history.events]


# --- Tests ---------------------------------------------------------------------------------------


async def test_result_is_recorded_as_a_marker_and_replays(client: Client, wid: str) -> None:
    assert await _run(client, LocalCall("greet", ["ann"]), wid) == "Hello, ann!"
    assert LOG[wid] == [("greet", True, 1)]
    history = await _history(client, wid)
    E = EventType
    assert _types(history) == [
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        E.EVENT_TYPE_WORKFLOW_TASK_STARTED, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_MARKER_RECORDED, E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
    [(data, attrs)] = _markers(history)
    assert data["seq"] == 1 and data["attempt"] == 1
    assert data["activity_type"] == "greet" and data["activity_id"] == "1"
    assert data["backoff"] is None and data["complete_time"]["seconds"] > 0
    assert json.loads(attrs.details["result"].payloads[0].data) == "Hello, ann!"
    assert not attrs.HasField("failure")


async def test_markers_beside_timers_and_normal_activities(client: Client, wid: str) -> None:
    async with _worker(client):
        result = await client.execute_workflow(TwoSteps.run, "bo", id=wid, task_queue=Q)
    assert result == ["Hello, bo!", "Hello, normal!", "Hello, bo2!"]
    assert LOG[wid] == [("greet", True, 1), ("greet", False, 1), ("greet", True, 1)]
    history = await _history(client, wid)
    assert [d["seq"] for d, _ in _markers(history)] == [1, 3]
    assert _types(history).count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1


async def test_short_backoff_is_retried_in_process(client: Client, wid: str) -> None:
    assert await _run(client, LocalCall("flaky", [3], initial_ms=20), wid) == 3
    assert LOG[wid] == [1, 2, 3]
    history = await _history(client, wid)
    [(data, _)] = _markers(history)
    assert data["attempt"] == 3
    assert EventType.EVENT_TYPE_TIMER_STARTED not in _types(history)


async def test_long_backoff_goes_back_to_the_workflow_as_a_timer(client: Client,
                                                                 wid: str) -> None:
    call = LocalCall("flaky", [3], initial_ms=100, backoff=2.0, local_retry_threshold_ms=50)
    assert await _run(client, call, wid) == 3
    assert LOG[wid] == [1, 2, 3]
    history = await _history(client, wid)
    markers = _markers(history)
    assert [d["attempt"] for d, _ in markers] == [1, 2, 3]
    # The failed attempts record their backoff (100 ms, then 200 ms) and failure.
    assert [d["backoff"] for d, _ in markers[:2]] == [{"seconds": 0, "nanos": 100_000_000},
                                                      {"seconds": 0, "nanos": 200_000_000}]
    assert markers[0][1].failure.message == "attempt 1 failed"
    assert markers[2][0]["backoff"] is None
    # Every retry keeps the first attempt's schedule time.
    assert len({json.dumps(d["original_schedule_time"]) for d, _ in markers}) == 1
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert [t.timer_started_event_attributes.start_to_fire_timeout.ToMilliseconds()
            for t in timers] == [100, 200]


async def test_maximum_attempts_fail_with_the_activity_error(client: Client, wid: str) -> None:
    err = await _failure(client, LocalCall("flaky", [9], maximum_attempts=2), wid)
    # Core hands a local activity's own failure to the workflow unwrapped.
    assert isinstance(err, ApplicationError), err
    assert err.message == "attempt 2 failed" and err.type == "Flaky"
    assert LOG[wid] == [1, 2]
    [(data, attrs)] = _markers(await _history(client, wid))
    assert data["attempt"] == 2 and attrs.failure.message == "attempt 2 failed"


async def test_non_retryable_error_is_not_retried(client: Client, wid: str) -> None:
    err = await _failure(client, LocalCall("refuses"), wid)
    assert isinstance(err, ApplicationError) and err.type == "Declined" and err.non_retryable
    assert LOG[wid] == [1]
    await _history(client, wid)


async def test_start_to_close_timeout_is_retried(client: Client, wid: str) -> None:
    call = LocalCall("hangs_first", [0], start_to_close_ms=150, maximum_attempts=2)
    assert await _run(client, call, wid) == 2
    assert LOG[wid] == [1, 2]
    await _history(client, wid)


async def test_start_to_close_timeout_fails(client: Client, wid: str) -> None:
    call = LocalCall("hangs_first", [0], start_to_close_ms=150, maximum_attempts=1)
    err = await _failure(client, call, wid)
    assert isinstance(err, ActivityError), err
    assert isinstance(err.cause, TimeoutError)
    assert err.cause.type.name == "START_TO_CLOSE"
    await _history(client, wid)


async def test_schedule_to_close_timeout(client: Client, wid: str) -> None:
    # The budget counts from the schedule, before the attempt starts: generous enough that a
    # loaded machine starts the attempt within it.
    call = LocalCall("hangs_first", [0], start_to_close_ms=None, schedule_to_close_ms=1000)
    err = await _failure(client, call, wid)
    assert isinstance(err, ActivityError), err
    assert isinstance(err.cause, TimeoutError)
    assert err.cause.type.name == "SCHEDULE_TO_CLOSE"
    assert LOG[wid] == [1]
    await _history(client, wid)


@pytest.mark.parametrize("ctype", ["TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED", "ABANDON"])
async def test_cancellation(client: Client, wid: str, ctype: str) -> None:
    async with _worker(client):
        result = await client.execute_workflow(
            RunLocal.run, LocalCall("waits_for_cancel", cancel=ctype), id=wid, task_queue=Q)
        assert result == "ActivityError/CancelledError"
        seen = list(LOG[wid])
        await asyncio.sleep(0.8)
        later = list(LOG[wid])
    if ctype == "WAIT_CANCELLATION_COMPLETED":
        # The workflow saw the cancellation only once the activity's cleanup was done.
        assert seen == ["started", "cancelled", "cleanup-done"]
    elif ctype == "TRY_CANCEL":
        # The activity is told, but the workflow does not wait for its cleanup.
        assert "cleanup-done" not in seen
        assert later == ["started", "cancelled", "cleanup-done"]
    else:
        assert later == ["started"]  # Abandoned: it runs on, never told.
    history = await _history(client, wid)
    [(data, attrs)] = [m for m in _markers(history) if m[0]["activity_type"] == "waits_for_cancel"]
    assert attrs.failure.HasField("canceled_failure_info")
    assert (data["complete_time"] is None) == (ctype != "WAIT_CANCELLATION_COMPLETED")


async def test_result_arriving_in_a_later_workflow_task(client: Client, wid: str) -> None:
    async with _worker(client):
        handle = await client.start_workflow(AcrossTasks.run, id=wid, task_queue=Q)
        await asyncio.sleep(0.2)  # The timer has fired; the local activity still runs.
        await handle.signal(AcrossTasks.poke, "hi")
        assert await handle.result() == [600, ["hi"]]
    history = await _history(client, wid)
    types = _types(history)
    marker = types.index(EventType.EVENT_TYPE_MARKER_RECORDED)
    # Recorded in the task the result joined, after the timer fired.
    assert types.index(EventType.EVENT_TYPE_TIMER_FIRED) < marker
    assert [d["seq"] for d, _ in _markers(history)] == [1]


async def test_unregistered_local_activity_fails_with_a_clear_error(client: Client,
                                                                    wid: str) -> None:
    err = await _failure(client, LocalCall("nope", maximum_attempts=1), wid)
    assert isinstance(err, ApplicationError), err
    assert err.type == "NotFoundError"
    assert "'nope' is not registered" in err.message and "activities=[...]" in err.message


async def test_parallel_local_activities(client: Client, wid: str) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parallel.run, id=wid, task_queue=Q)
    assert result == [120, 10, 60, 1]
    history = await _history(client, wid)
    markers = _markers(history)
    assert sorted(d["seq"] for d, _ in markers) == [1, 2, 3, 4]
    # The results came one by one, each in an activation of its own within the one task.
    assert EventType.EVENT_TYPE_TIMER_STARTED not in _types(history)
