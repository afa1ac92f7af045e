"""``WorkflowEnvironment.start_time_skipping_v2()``: temporalio's per-workflow time skipping
(each workflow its own virtual clock), answered from the database."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from dbosify import activity, workflow
from dbosify._runtime._process import current_process
from dbosify._store import _tables as t
from dbosify.client import WorkflowExecutionStatus
from dbosify.testing import TimeSkippingConfig, WorkflowEnvironment
from dbosify.worker import Worker

from ._workflows import WaitAMonth

Q = "skip-v2-q"
# Generous: without skipping these tests would wait for days; with it they take moments.
WALL_LIMIT_S = 30.0
OFF = TimeSkippingConfig(enabled=False)


@workflow.defn
class TwoTimers:
    """Sleeps an hour, then a day, and says which have fired."""

    def __init__(self) -> None:
        self.fired: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await asyncio.sleep(timedelta(hours=1).total_seconds())
        self.fired.append("hour")
        await asyncio.sleep(timedelta(days=1).total_seconds())
        self.fired.append("day")
        return self.fired

    @workflow.query
    def timers_fired(self) -> list[str]:
        return self.fired

    @workflow.query
    def clock(self) -> datetime:
        return workflow.now()


@workflow.defn
class DayThenContinue:
    """Sleeps a day, continues as new once, sleeps another day; returns when it woke last."""

    @workflow.run
    async def run(self, continued: bool = False) -> datetime:
        await asyncio.sleep(timedelta(days=1).total_seconds())
        if not continued:
            workflow.continue_as_new(True)
        return workflow.now()


@activity.defn
async def wall_clock_work() -> str:
    await asyncio.sleep(0.2)
    return "done"


@activity.defn
async def busy_work() -> None:
    await asyncio.sleep(1.0)


@workflow.defn
class BusyThenSleep:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(busy_work, start_to_close_timeout=timedelta(seconds=30))
        await asyncio.sleep(timedelta(hours=1).total_seconds())
        return "slept"


@workflow.defn
class ChildSleeper:
    @workflow.run
    async def run(self) -> datetime:
        await asyncio.sleep(timedelta(days=3).total_seconds())
        return workflow.now()


@workflow.defn
class ParentOfSleeper:
    """An activity (wall speed), then a day's sleep, then a child that sleeps three days."""

    @workflow.run
    async def run(self) -> list[str]:
        start = workflow.now()
        await workflow.execute_activity(wall_clock_work,
                                        start_to_close_timeout=timedelta(seconds=30))
        await asyncio.sleep(timedelta(days=1).total_seconds())
        child_now = await workflow.execute_child_workflow(ChildSleeper.run, id="child-sleeper")
        return [str(workflow.now() - start >= timedelta(days=1)),
                str(child_now - start >= timedelta(days=4))]


async def _wait_fired(handle: object, expected: list[str]) -> None:
    for _ in range(500):
        if await handle.query(TwoTimers.timers_fired) == expected:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timers fired never became {expected}")


async def test_a_thirty_day_sleep_skips_with_the_default_config() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2() as env:
        assert env.supports_time_skipping_v2 and env.supports_time_skipping
        assert not env.supports_time_skipping_v1
        async with Worker(env.client, task_queue=Q, workflows=[WaitAMonth]):
            wall = time.monotonic()
            handle = await env.client.start_workflow(WaitAMonth.run, id="month", task_queue=Q)
            slept = await handle.result()
            assert time.monotonic() - wall < WALL_LIMIT_S
        assert slept >= timedelta(days=30).total_seconds()
        info = await env.get_time_skipping_info(handle)
        assert info is not None and info.current_session_skip_count == 1
        # Its clock is a month ahead; the engine's is not.
        assert await env.get_current_time(handle) - datetime.now().astimezone() >= \
            timedelta(days=29)


async def test_virtual_time_goes_on_along_a_continue_as_new_chain() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[DayThenContinue]):
            start = datetime.now().astimezone()
            handle = await env.client.start_workflow(DayThenContinue.run, id="chain",
                                                     task_queue=Q)
            # A fast-forward of 36 hours crosses into the chain's second run, and completes
            # there (the poll follows the chain), which goes on from the first run's time.
            assert await env.fast_forward(handle, timedelta(hours=36)) is True
            current = env.client.get_workflow_handle("chain")
            assert (await current.describe()).status == WorkflowExecutionStatus.RUNNING
            assert await env.get_current_time(current) - start >= timedelta(hours=36)
            assert await env.fast_forward(current) is False  # Unbounded: until it closes.
            woke = await current.result()
    assert datetime.fromisoformat(woke) - start >= timedelta(days=2)


async def test_fast_forward_until_done_completes_a_month_long_sleep() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[WaitAMonth]):
            handle = await env.client.start_workflow(WaitAMonth.run, id="month", task_queue=Q)
            await asyncio.sleep(0.2)
            # Not skipping: the workflow waits in wall time, and shows no skipping info.
            assert await env.get_time_skipping_info(handle) is None
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            wall = time.monotonic()
            assert await env.fast_forward(handle) is False  # Unbounded: waits for the close.
            assert time.monotonic() - wall < WALL_LIMIT_S
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
            assert await handle.result() >= timedelta(days=30).total_seconds()


async def test_a_bounded_fast_forward_fires_only_what_falls_within_it() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            handle = await env.client.start_workflow(TwoTimers.run, id="timers", task_queue=Q)
            await _wait_fired(handle, [])
            before = await env.get_current_time(handle)
            assert await env.fast_forward(handle, timedelta(hours=2)) is True
            moved = await env.get_current_time(handle) - before
            assert timedelta(hours=2) <= moved < timedelta(hours=2, minutes=1)
            await _wait_fired(handle, ["hour"])
            info = await env.get_time_skipping_info(handle)
            assert info is not None
            assert info.fast_forward_info.has_completed
            # The fast-forward is done: skipping stops, the day's timer waits.
            assert not info.effective_config.enabled
            await asyncio.sleep(0.3)
            assert await handle.query(TwoTimers.timers_fired) == ["hour"]
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            # The day's timer falls within the next day: the workflow completes before the
            # fast-forward's end, which temporalio reports as False.
            assert await env.fast_forward(handle, timedelta(days=1)) is False
            assert await handle.result() == ["hour", "day"]


async def test_a_restarted_worker_keeps_the_runs_virtual_time() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            handle = await env.client.start_workflow(TwoTimers.run, id="kept", task_queue=Q)
            await _wait_fired(handle, [])
            assert await env.fast_forward(handle, timedelta(hours=2)) is True
            await _wait_fired(handle, ["hour"])
            skipped = await handle.query(TwoTimers.clock)
            process = current_process()
            assert process is not None
            first_driver = process.drivers[handle.result_run_id or ""]
        # A new worker takes the run over and replays it: its clock is where it was.
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            await _wait_fired(handle, ["hour"])
            driver = process.drivers[handle.result_run_id or ""]
            assert driver is not first_driver and driver.recovering
            assert await handle.query(TwoTimers.clock) >= skipped
            assert await env.get_current_time(handle) >= skipped
            assert await env.fast_forward(handle, timedelta(days=1)) is False
            assert await handle.result() == ["hour", "day"]


async def test_each_workflow_has_its_own_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            one = await env.client.start_workflow(TwoTimers.run, id="one", task_queue=Q)
            other = await env.client.start_workflow(TwoTimers.run, id="other", task_queue=Q)
            await _wait_fired(other, [])
            assert await env.fast_forward(one, timedelta(days=1)) is True
            await _wait_fired(one, ["hour"])
            assert await other.query(TwoTimers.timers_fired) == []
            assert await env.get_time_skipping_info(other) is None
            one_now = await env.get_current_time(one)
            assert one_now - datetime.now().astimezone() >= timedelta(hours=23)
            # The other starts skipping on its own clock, from its own (wall) time.
            assert await env.fast_forward(other, timedelta(hours=1, minutes=30)) is True
            await _wait_fired(other, ["hour"])
            other_now = await env.get_current_time(other)
            assert timedelta(hours=22) < one_now - other_now < timedelta(hours=23)


async def test_a_later_fast_forward_overrides_an_earlier_one() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF) as env:
        async with Worker(env.client, task_queue=Q, workflows=[BusyThenSleep],
                          activities=[busy_work]):
            handle = await env.client.start_workflow(BusyThenSleep.run, id="busy",
                                                     task_queue=Q)
            # The activity holds the clock (it runs at wall speed): the first fast-forward
            # cannot end before the second replaces it, and is reported overridden.
            first = asyncio.ensure_future(env.fast_forward(handle, timedelta(days=2)))
            for _ in range(500):
                info = await env.get_time_skipping_info(handle)
                if info is not None and info.fast_forward_info.fast_forward_id:
                    break
                await asyncio.sleep(0.01)
            assert info is not None and not info.fast_forward_info.has_completed
            assert await env.fast_forward(handle, timedelta(minutes=30)) is True
            with pytest.raises(RuntimeError, match="overridden"):
                await first
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            assert await env.fast_forward(handle) is False
            assert await handle.result() == "slept"


async def test_with_time_skipping_disabled_starts_workflows_without_a_config() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2() as env:
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            with env.with_time_skipping_disabled():
                handle = await env.client.start_workflow(TwoTimers.run, id="plain",
                                                         task_queue=Q)
            await asyncio.sleep(0.3)
            assert await handle.query(TwoTimers.timers_fired) == []
            assert await env.get_time_skipping_info(handle) is None

            def stored() -> object:
                process = current_process()
                assert process is not None
                with process.store.engine.connect() as conn:
                    return conn.execute(sa.select(t.runs.c.time_skipping).where(
                        t.runs.c.run_id == handle.result_run_id)).scalar()

            assert stored() is None  # Nothing recorded for a run without time skipping.
            stamped = await env.client.start_workflow(TwoTimers.run, id="stamped",
                                                      task_queue=Q)
            assert await stamped.result() == ["hour", "day"]


async def test_activities_run_at_wall_speed_and_children_inherit_the_virtual_time() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2() as env:
        async with Worker(env.client, task_queue=Q, workflows=[ParentOfSleeper, ChildSleeper],
                          activities=[wall_clock_work]):
            wall = time.monotonic()
            handle = await env.client.start_workflow(ParentOfSleeper.run, id="parent",
                                                     task_queue=Q)
            assert await handle.result() == ["True", "True"]
            assert time.monotonic() - wall < WALL_LIMIT_S
            child = env.client.get_workflow_handle("child-sleeper")
            child_info = await env.get_time_skipping_info(child)
            assert child_info is not None and child_info.current_session_skip_count == 1


async def test_sleep_and_auto_skipping_control_raise_as_temporalio_v2() -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2() as env:
        with pytest.raises(RuntimeError, match="fast_forward"):
            await env.sleep(timedelta(hours=1))
        with pytest.raises(RuntimeError, match="with_time_skipping_disabled"):
            with env.auto_time_skipping_disabled():
                pass
        with pytest.raises(RuntimeError, match="handle"):
            await env.get_current_time()


async def test_fast_forward_on_each_backend(database: str) -> None:
    async with await WorkflowEnvironment.start_time_skipping_v2(ts_config=OFF,
                                                                database=database) as env:
        async with Worker(env.client, task_queue=Q, workflows=[TwoTimers]):
            handle = await env.client.start_workflow(TwoTimers.run, id="backend", task_queue=Q)
            await _wait_fired(handle, [])
            assert await env.fast_forward(handle, timedelta(hours=2)) is True
            await _wait_fired(handle, ["hour"])
            wall = time.monotonic()
            assert await env.fast_forward(handle) is False
            assert time.monotonic() - wall < WALL_LIMIT_S
            assert await handle.result() == ["hour", "day"]
