"""history_rows: one plain dict per event, payloads decoded, names and durations linked."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.exceptions import ApplicationError

from dbosify._records import ActivityAttemptInfo
from dbosify.history import HISTORY_COLUMNS, history_rows, history_rows_sync

from ._drive import Driver, drive, fail_activity, signal
from ._workflows import ACTIVITIES, Charge, Greeter, Patched, Sleeper


async def test_rows_of_a_signal_and_an_activity() -> None:
    driver = await drive(Greeter, activities=ACTIVITIES, signals=[signal("set_name", "ann")])
    rows = await history_rows(driver.history())
    assert all(tuple(row) == HISTORY_COLUMNS for row in rows)
    assert [r["event_id"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["time"].tzinfo is timezone.utc for r in rows)
    by_type = {r["event_type"]: r for r in rows}
    assert by_type["WORKFLOW_EXECUTION_STARTED"]["name"] == "Greeter"
    assert by_type["WORKFLOW_EXECUTION_SIGNALED"]["name"] == "set_name"
    assert by_type["WORKFLOW_EXECUTION_SIGNALED"]["input"] == ["ann"]
    assert by_type["WORKFLOW_EXECUTION_SIGNALED"]["identity"] == "signaller"
    scheduled = by_type["ACTIVITY_TASK_SCHEDULED"]
    assert (scheduled["name"], scheduled["input"], scheduled["duration"]) == ("greet", ["ann"],
                                                                             None)
    done = by_type["ACTIVITY_TASK_COMPLETED"]
    assert (done["name"], done["result"], done["attempt"]) == ("greet", "hello ann", 1)
    assert done["duration"] == done["time"] - scheduled["time"] == timedelta(seconds=1)
    assert done["identity"] == "worker-1"
    closed = by_type["WORKFLOW_EXECUTION_COMPLETED"]
    assert closed["result"] == "hello ann"
    assert closed["duration"] == closed["time"] - rows[0]["time"]


async def test_rows_of_a_retried_failing_activity() -> None:
    driver = Driver(Charge)
    await driver.start()
    # The activity failed twice; its last attempt's record carries the previous failure.
    previous = fail_activity(1, ApplicationError("busy", type="Busy"), activity_type="charge",
                             wrap=False).resolve_activity.result.failed.failure
    attempt = ActivityAttemptInfo(attempt=2, started_ms=driver.now_ms + 300,
                                  identity="worker-2", last_failure=previous)
    await driver.activate(
        fail_activity(1, ApplicationError("card declined", type="PaymentError",
                                          non_retryable=True), activity_type="charge",
                      identity="worker-2"),
        activity_attempts={1: attempt})
    rows = history_rows_sync(driver.history())
    started = next(r for r in rows if r["event_type"] == "ACTIVITY_TASK_STARTED")
    assert (started["name"], started["attempt"], started["identity"]) == ("charge", 2,
                                                                          "worker-2")
    assert isinstance(started["failure"], ApplicationError)
    assert started["failure"].message == "busy"
    failed = next(r for r in rows if r["event_type"] == "ACTIVITY_TASK_FAILED")
    assert failed["attempt"] == 2 and failed["name"] == "charge"
    assert isinstance(failed["failure"], ApplicationError)
    assert failed["failure"].type == "PaymentError"
    await driver.close()


async def test_rows_of_timers_and_patches() -> None:
    rows = await history_rows((await drive(Sleeper)).history())
    started = next(r for r in rows if r["event_type"] == "TIMER_STARTED")
    fired = next(r for r in rows if r["event_type"] == "TIMER_FIRED")
    assert started["name"] == fired["name"] == "1"
    assert started["input"] == timedelta(seconds=30)
    assert fired["duration"] == fired["time"] - started["time"]
    rows = await history_rows((await drive(Patched, activities=ACTIVITIES)).history())
    marker = next(r for r in rows if r["event_type"] == "MARKER_RECORDED")
    assert marker["name"] == "v2"
    assert marker["input"] == {"patch-data": {"id": "v2", "deprecated": False}}


def test_an_undecodable_payload_is_shown_as_stored() -> None:
    event = HistoryEvent(event_id=1)
    event.event_type = 1  # WORKFLOW_EXECUTION_STARTED
    odd = Payload(metadata={"encoding": b"binary/encrypted"}, data=b"\x00\x01")
    event.workflow_execution_started_event_attributes.input.payloads.append(odd)
    event.workflow_execution_started_event_attributes.workflow_type.name = "W"
    [row] = history_rows_sync([event])
    assert row["event_type"] == "WORKFLOW_EXECUTION_STARTED"
    assert row["input"] == [odd]


def test_sync_rows_inside_a_running_loop() -> None:
    async def inside() -> int:
        driver = await drive(Sleeper)
        # A notebook cell calling the sync function while its loop runs.
        return len(history_rows_sync(driver.history()))

    assert asyncio.run(inside()) > 5
