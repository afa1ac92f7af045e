"""Backfill (each partition retried on its own, progress visible) and FanOut (the concurrency
bound, measured with a counter); both continuing as new with their progress carried."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from dbosify import activity
from dbosify.client import Client, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError
from dbosify.pipelines import Backfill, BackfillResult, FanOut, date_partitions, id_ranges

ATTEMPTS: Counter[str] = Counter()
FAIL_UNTIL: dict[str, int] = {}
"""Partition -> the attempt that first succeeds (0: never)."""
RELEASE = asyncio.Event()


@activity.defn
async def load_day(day: str) -> int:
    ATTEMPTS[day] += 1
    needed = FAIL_UNTIL.get(day, 1)
    if needed == 0 or activity.info().attempt < needed:
        raise ApplicationError(f"{day} is not ready", type="NotReady")
    return int(day[-2:])


_FAST = RetryPolicy(initial_interval=timedelta(milliseconds=10), backoff_coefficient=1.0,
                    maximum_attempts=3)


class Days(Backfill):
    activity = load_day
    concurrency = 2
    retry_policy = _FAST


class DaysLenient(Backfill):
    activity = load_day
    concurrency = 3
    retry_policy = _FAST
    fail_run = False


@pytest.fixture(autouse=True)
def _reset() -> None:
    ATTEMPTS.clear()
    FAIL_UNTIL.clear()
    RUNNING.clear()


async def test_a_failing_partition_is_retried_on_its_own(client: Client, serve: Any) -> None:
    days = date_partitions("2024-02-27", "2024-03-02")
    assert days == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
    FAIL_UNTIL["2024-02-29"] = 3
    async with serve([Days], [load_day]):
        handle = await client.start_workflow(Days.run, days, id=f"bf-{uuid.uuid4()}",
                                             task_queue="q")
        result: BackfillResult = await handle.result()
        history = await handle.fetch_history()
    assert result.results == {d: int(d[-2:]) for d in days} and result.failed == {}
    # The failing day took three attempts; every other day ran exactly once.
    assert ATTEMPTS == {**{d: 1 for d in days}, "2024-02-29": 3}
    # One activity per partition in the history.
    scheduled = [e for e in history.events if e.HasField(
        "activity_task_scheduled_event_attributes")]
    assert len(scheduled) == len(days)


async def test_partitions_that_keep_failing_are_named(client: Client, serve: Any) -> None:
    days = date_partitions("2024-01-01", "2024-01-04")
    FAIL_UNTIL.update({"2024-01-02": 0, "2024-01-04": 0})
    async with serve([Days, DaysLenient], [load_day]):
        with pytest.raises(WorkflowFailureError) as caught:
            await client.execute_workflow(Days.run, days, id=f"bf-{uuid.uuid4()}",
                                          task_queue="q")
        lenient: BackfillResult = await client.execute_workflow(
            DaysLenient.run, days, id=f"bf-{uuid.uuid4()}", task_queue="q")
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BackfillFailed"
    assert "2 of 4 partitions failed: 2024-01-02, 2024-01-04" in cause.message
    assert set(lenient.failed) == {"2024-01-02", "2024-01-04"}
    assert set(lenient.results) == {"2024-01-01", "2024-01-03"}


HOLD = threading.Event()


@activity.defn
async def held_day(day: str) -> str:
    if day.endswith("03"):
        await asyncio.to_thread(HOLD.wait, 30)
    return day


class HeldDays(Backfill):
    activity = held_day
    concurrency = 2


async def test_progress_shows_in_the_query_and_the_current_details(client: Client,
                                                                   serve: Any) -> None:
    import temporalio.api.sdk.v1

    HOLD.clear()
    days = date_partitions("2024-05-01", "2024-05-04")
    async with serve([HeldDays], [held_day]):
        handle = await client.start_workflow(HeldDays.run, days, id=f"bf-{uuid.uuid4()}",
                                             task_queue="q")
        for _ in range(500):
            progress = await handle.query(HeldDays.progress)  # type: ignore[arg-type]
            if len(progress.done) == 3:
                break
            await asyncio.sleep(0.02)
        assert sorted(progress.done) == ["2024-05-01", "2024-05-02", "2024-05-04"]
        assert progress.running == ["2024-05-03"] and progress.total == 4
        metadata = await handle.query("__temporal_workflow_metadata",
                                      result_type=temporalio.api.sdk.v1.WorkflowMetadata)
        assert metadata.current_details == "3/4 partitions done; running 2024-05-03"
        # The notebook's progress widget shows the same.
        from dbosify.widgets import ProgressBar

        bar = await asyncio.to_thread(ProgressBar, handle, autostart=False)
        await asyncio.to_thread(bar.refresh)
        assert bar.details == "3/4 partitions done; running 2024-05-03"
        assert (bar.done, bar.scheduled, bar.status) == (3, 4, "RUNNING")
        HOLD.set()
        await handle.result()


RUNNING: list[int] = []
_lock = threading.Lock()
LIMIT = 3


@activity.defn
async def square(n: int) -> int:
    with _lock:
        RUNNING.append(1)
        now = len(RUNNING)
        PEAK.append(now)
    try:
        # Hold the slot until the bound is reached (or a moment passes, for the tail), so a
        # missing bound shows as more than LIMIT running at once.
        for _ in range(100):
            if len(RUNNING) >= LIMIT:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        return n * n
    finally:
        with _lock:
            RUNNING.pop()


PEAK: list[int] = []


class Squares(FanOut):
    activity = square
    concurrency = LIMIT


async def test_fanout_respects_its_concurrency_bound(client: Client, serve: Any) -> None:
    PEAK.clear()
    items = list(range(12))
    async with serve([Squares], [square]):
        handle = await client.start_workflow(Squares.run, items, id=f"fo-{uuid.uuid4()}",
                                             task_queue="q")
        result = await handle.result()
        progress = await handle.query(Squares.progress)  # type: ignore[arg-type]
    assert result == [n * n for n in items]
    assert max(PEAK) == LIMIT
    assert len(PEAK) == len(items)
    assert progress == {"done": 12, "total": 12, "runs": 1}


def test_id_ranges_cover_the_range() -> None:
    assert id_ranges(5, 30, 10) == [[5, 15], [15, 25], [25, 30]]
    with pytest.raises(ValueError):
        id_ranges(0, 1, 0)


CALLS: Counter[Any] = Counter()


@activity.defn
async def flaky_held_day(day: str) -> int:
    """load_day, but 2024-03-08 waits for HOLD (so a test can look at a run mid-way)."""
    CALLS[day] += 1
    if day == "2024-03-08":
        await asyncio.to_thread(HOLD.wait, 30)
    return await load_day(day)


class LongBackfill(Backfill):
    activity = flaky_held_day
    concurrency = 2
    partitions_per_run = 3
    retry_policy = _FAST
    fail_run = False


async def test_a_long_backfill_continues_as_new_carrying_its_progress(
        client: Client, serve: Any) -> None:
    import temporalio.api.sdk.v1

    HOLD.clear()
    CALLS.clear()
    days = date_partitions("2024-03-01", "2024-03-10")
    FAIL_UNTIL.update({"2024-03-02": 2, "2024-03-05": 0})
    async with serve([LongBackfill], [flaky_held_day]):
        handle = await client.start_workflow(LongBackfill.run, days, id=f"bf-{uuid.uuid4()}",
                                             task_queue="q")
        # Runs of 3 partitions: the third run (03-07, 03-08, 03-09) holds on 03-08.
        for _ in range(1000):
            progress = await handle.query(LongBackfill.progress)  # type: ignore[arg-type]
            if progress.runs == 3 and len(progress.done) == 7:
                break
            await asyncio.sleep(0.02)
        assert progress.runs == 3 and progress.total == 10
        assert sorted(progress.done) == [d for d in days[:9] if d not in ("2024-03-05",
                                                                        "2024-03-08")]
        assert list(progress.failed) == ["2024-03-05"] and progress.running == ["2024-03-08"]
        metadata = await handle.query("__temporal_workflow_metadata",
                                      result_type=temporalio.api.sdk.v1.WorkflowMetadata)
        assert metadata.current_details == \
            "7/10 partitions done, 1 failed (2024-03-05); running 2024-03-08 (run 3)"
        HOLD.set()
        result: BackfillResult = await handle.result()
        last_history = await handle.fetch_history()
        first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        first_history = await first.fetch_history()
        described = await first.describe()
    assert result.results == {d: int(d[-2:]) for d in days if d != "2024-03-05"}
    assert list(result.failed) == ["2024-03-05"]
    # Nothing lost or repeated across the hand-overs: one call per partition, save retries.
    assert CALLS == {**{d: 1 for d in days}, "2024-03-02": 2, "2024-03-05": 3}
    # Each run's history holds its own partitions only: bounded however long the backfill.
    def scheduled(history: Any) -> int:
        return sum(e.HasField("activity_task_scheduled_event_attributes")
                   for e in history.events)
    assert scheduled(first_history) == 3 and scheduled(last_history) == 1
    assert first_history.events[-1].HasField(
        "workflow_execution_continued_as_new_event_attributes")
    assert described.status is not None and described.status.name == "CONTINUED_AS_NEW"


CUBED: Counter[int] = Counter()
CUBE_RUNNING: list[int] = []
CUBE_PEAK: list[int] = []


@activity.defn
async def cube(n: int) -> int:
    with _lock:
        CUBED[n] += 1
        CUBE_RUNNING.append(n)
        CUBE_PEAK.append(len(CUBE_RUNNING))
    try:
        await asyncio.sleep(0.01 * (n % 3))  # finishing out of order
        return n ** 3
    finally:
        with _lock:
            CUBE_RUNNING.remove(n)


class Cubes(FanOut):
    activity = cube
    concurrency = 2
    items_per_run = 3


async def test_a_long_fanout_continues_as_new_and_returns_every_result_in_order(
        client: Client, serve: Any) -> None:
    CUBED.clear()
    CUBE_PEAK.clear()
    items = list(range(11))
    async with serve([Cubes], [cube]):
        handle = await client.start_workflow(Cubes.run, items, id=f"fo-{uuid.uuid4()}",
                                             task_queue="q")
        result = await handle.result()
        progress = await handle.query(Cubes.progress)  # type: ignore[arg-type]
        history = await handle.fetch_history()
    assert result == [n ** 3 for n in items]
    assert CUBED == {n: 1 for n in items}
    assert max(CUBE_PEAK) <= 2
    assert progress == {"done": 11, "total": 11, "runs": 4}  # 3 + 3 + 3 + 2 items
    assert sum(e.HasField("activity_task_scheduled_event_attributes")
               for e in history.events) == 2
