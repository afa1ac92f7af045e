"""The widgets driven through their traits and buttons, without a browser, on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from notebook._flows import ACTIVITIES, WORKFLOWS, Approval

from dbosify.client import Client
from dbosify.widgets import ProgressBar, RunPanel, RunsMonitor, parse_args
from dbosify.worker import Worker


def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait in this thread (as a cell would) for the background refresh to get there."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


async def _until_waiting(handle: object) -> None:
    for _ in range(250):
        if await handle.query(Approval.where) == "waiting":  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the run never waited for approval")


async def test_runs_monitor_refreshes_in_the_background(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        monitor = RunsMonitor(client, autostart=False)
        monitor.refresh()
        assert monitor.rows == [] and monitor.refreshes == 1 and monitor.error == ""
        first = await client.start_workflow(Approval.run, 1, id="m-1", task_queue="q")
        await _until_waiting(first)
        second = await client.start_workflow(Approval.run, 2, id="m-2", task_queue="q")
        await _until_waiting(second)
        await first.signal(Approval.approve, True)
        assert await first.result() == 3
        monitor.refresh()
        assert [r["id"] for r in monitor.rows] == ["m-2", "m-1"]
        assert [r["status"] for r in monitor.rows] == ["RUNNING", "COMPLETED"]
        assert all(r["type"] == "Approval" for r in monitor.rows)
        assert monitor.rows[1]["duration"].total_seconds() > 0
        assert "m-2" in monitor._table.value and "RUNNING" in monitor._table.value

        # The periodic refresh runs on the background loop while this thread is free.
        monitor.interval = 0.05
        monitor.start()
        assert monitor.refreshing
        before = monitor.refreshes
        await asyncio.to_thread(wait_until, lambda: monitor.refreshes >= before + 3)
        monitor.stop()
        assert not monitor.refreshing
        stopped_at = monitor.refreshes
        await asyncio.sleep(0.3)
        assert monitor.refreshes == stopped_at

        filtered = RunsMonitor(client, "ExecutionStatus = 'Running'", autostart=False)
        filtered.refresh()
        assert [r["id"] for r in filtered.rows] == ["m-2"]
        await second.terminate("test over")


async def test_runs_monitor_shows_the_current_activity(client: Client) -> None:
    gate = asyncio.Event()
    from dbosify import activity

    @activity.defn(name="add_one")
    async def slow_add_one(x: int) -> int:
        await gate.wait()
        return x + 1

    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=[slow_add_one]):
        handle = await client.start_workflow(Approval.run, 1, id="m-3", task_queue="q")
        monitor = RunsMonitor(client, autostart=False)
        for _ in range(250):
            await asyncio.to_thread(monitor.refresh)
            if monitor.rows and monitor.rows[0]["activity"]:
                break
            await asyncio.sleep(0.02)
        assert monitor.rows[0]["activity"] == "add_one"
        gate.set()
        await _until_waiting(handle)
        await asyncio.to_thread(monitor.refresh)
        assert monitor.rows[0]["activity"] == ""
        await handle.terminate("test over")


def test_a_failed_refresh_shows_its_error() -> None:
    class Broken:
        def list_workflows(self, *args: object, **kwargs: object) -> object:
            raise RuntimeError("database gone")

    monitor = RunsMonitor(Broken(), autostart=False)  # type: ignore[arg-type]
    monitor.refresh()
    assert monitor.error == "RuntimeError: database gone"
    assert "database gone" in monitor._title.value


async def test_run_panel_buttons_drive_the_run(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="p-1", task_queue="q")
        await _until_waiting(handle)
        panel = await asyncio.to_thread(RunPanel, handle)
        assert panel.status == "RUNNING"
        assert panel.rows[0]["event_type"] == "WORKFLOW_EXECUTION_STARTED"
        assert "ACTIVITY_TASK_COMPLETED" in panel._table.value

        panel.name_box.value = "where"
        await asyncio.to_thread(panel.buttons["query"].click)
        assert panel.error == "" and panel.result == "waiting"
        assert panel.output == "query where → 'waiting'"

        panel.name_box.value = "no_such_update"
        await asyncio.to_thread(panel.buttons["update"].click)
        assert "update failed" in panel.error

        panel.name_box.value = "decide"
        panel.args_box.value = "True"
        await asyncio.to_thread(panel.buttons["update"].click)
        assert panel.error == "" and panel.result == "approved"
        assert await handle.result() == 3
        await asyncio.to_thread(panel.refresh)
        assert panel.status == "COMPLETED"
        assert panel.rows[-1]["result"] == 3

        other = await client.start_workflow(Approval.run, 5, id="p-2", task_queue="q")
        await _until_waiting(other)
        panel2 = await asyncio.to_thread(RunPanel, other)
        panel2.name_box.value = "approve"
        panel2.args_box.value = "False"
        await asyncio.to_thread(panel2.buttons["signal"].click)
        assert panel2.output == "signal approve sent"
        assert await other.result() == -1
        await asyncio.to_thread(panel2.refresh)
        assert any(r["event_type"] == "WORKFLOW_EXECUTION_SIGNALED" and r["input"] == [False]
                   for r in panel2.rows)

        third = await client.start_workflow(Approval.run, 7, id="p-3", task_queue="q")
        await _until_waiting(third)
        panel3 = await asyncio.to_thread(RunPanel, third)
        panel3.reason_box.value = "no longer needed"
        await asyncio.to_thread(panel3.buttons["terminate"].click)
        assert panel3.output == "terminated: no longer needed"
        assert panel3.status == "TERMINATED"
        panel3.name_box.value = ""
        await asyncio.to_thread(panel3.buttons["signal"].click)
        assert panel3.error == "signal: type the handler's name first"

        fourth = await client.start_workflow(Approval.run, 9, id="p-4", task_queue="q")
        await _until_waiting(fourth)
        panel4 = await asyncio.to_thread(RunPanel, fourth)
        await asyncio.to_thread(panel4.buttons["cancel"].click)
        assert panel4.output == "cancel requested"
        with pytest.raises(Exception):  # noqa: B017  (the run ends cancelled)
            await fourth.result()


async def test_progress_bar_counts_activities_and_shows_details(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="g-1", task_queue="q")
        await _until_waiting(handle)
        bar = await asyncio.to_thread(ProgressBar, handle, autostart=False)
        await asyncio.to_thread(bar.refresh)
        assert (bar.done, bar.scheduled, bar.status) == (1, 1, "RUNNING")
        assert bar.details == "waiting for approval"
        assert bar.text == "waiting for approval (1/1 activities)"
        assert bar._bar.value == 1 and bar._bar.max == 1

        bar.start(0.05)
        await handle.signal(Approval.approve, True)
        assert await handle.result() == 3
        await asyncio.to_thread(wait_until, lambda: not bar.refreshing)
        assert (bar.done, bar.scheduled, bar.status) == (2, 2, "COMPLETED")
        assert bar.text.endswith("— completed") and bar._bar.bar_style == "success"


def test_parse_args() -> None:
    assert parse_args("") == []
    assert parse_args("1, 'a', [2]") == [1, "a", [2]]
    assert parse_args("True") == [True]
    assert parse_args("Ann") == ["Ann"]


async def test_stop_from_the_background_loop_does_not_wait_for_itself(client: Client) -> None:
    from dbosify.notebook import background_loop

    monitor = RunsMonitor(client, interval=0.05)
    await asyncio.to_thread(wait_until, lambda: monitor.refreshes >= 1)

    async def stop_inside() -> None:
        monitor.stop()

    await asyncio.wrap_future(background_loop().submit(stop_inside()))
    assert not monitor.refreshing
