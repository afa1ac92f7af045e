"""``WorkflowEnvironment.start_time_skipping()``: temporalio's time-skipping semantics on a
fresh embedded database (the clock jumps while every run waits only on time)."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta

import pytest

from dbosify import activity, workflow
from dbosify._store import _clock
from dbosify.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from dbosify.common import RetryPolicy
from dbosify.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType
from dbosify.testing import WorkflowEnvironment
from dbosify.worker import Worker

from ._workflows import WaitAMonth

Q = "skip-q"
# Generous: without skipping these tests would wait for days; with it they take moments.
WALL_LIMIT_S = 30.0


@activity.defn
async def never_runs() -> str:
    return "ran"


@activity.defn
async def always_fails() -> str:
    raise ApplicationError(f"attempt {activity.info().attempt} failed")


@workflow.defn
class SlowActivities:
    """An activity nobody serves within its 10-day timeout, then one retried for days."""

    @workflow.run
    async def run(self) -> list[str]:
        outcomes = []
        try:
            await workflow.execute_activity(never_runs, task_queue="nobody-serves-this",
                                            schedule_to_close_timeout=timedelta(days=10))
        except ActivityError as err:
            assert isinstance(err.cause, TimeoutError)
            outcomes.append(err.cause.type.name)
        started = workflow.now()
        try:
            await workflow.execute_activity(
                always_fails, schedule_to_close_timeout=timedelta(days=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(days=1),
                                         maximum_attempts=4))
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            outcomes.append(err.cause.message)
        outcomes.append(f"{(workflow.now() - started).days} days")
        return outcomes


@workflow.defn
class UpdatableTimer:
    """Temporal's updatable-timer sample: sleeps until a time a signal can move."""

    def __init__(self) -> None:
        self.wake_up_at: datetime | None = None
        self.updated = False

    @workflow.run
    async def run(self, wake_up_at: datetime) -> datetime:
        self.wake_up_at = wake_up_at
        while True:
            self.updated = False
            sleep = (self.wake_up_at - workflow.now()).total_seconds()
            if sleep <= 0:
                return workflow.now()
            try:
                await workflow.wait_condition(lambda: self.updated, timeout=sleep)
            except asyncio.TimeoutError:
                return workflow.now()

    @workflow.signal
    def update_wake_up_time(self, wake_up_at: datetime) -> None:
        self.wake_up_at = wake_up_at
        self.updated = True

    @workflow.query
    def get_wake_up_time(self) -> datetime:
        assert self.wake_up_at is not None
        return self.wake_up_at


@workflow.defn
class Ping:
    @workflow.run
    async def run(self) -> str:
        return "pong"


async def test_a_thirty_day_sleep_is_skipped() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        assert env.supports_time_skipping
        start = await env.get_current_time()
        async with Worker(env.client, task_queue=Q, workflows=[WaitAMonth]):
            wall = time.monotonic()
            slept = await env.client.execute_workflow(WaitAMonth.run, id="month", task_queue=Q)
            assert time.monotonic() - wall < WALL_LIMIT_S
        assert slept >= timedelta(days=30).total_seconds()
        assert await env.get_current_time() - start >= timedelta(days=30)


async def test_activity_timeouts_and_retries_follow_the_skipped_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[SlowActivities],
                          activities=[always_fails]):
            wall = time.monotonic()
            outcomes = await env.client.execute_workflow(SlowActivities.run, id="acts",
                                                         task_queue=Q)
            assert time.monotonic() - wall < WALL_LIMIT_S
    assert outcomes[0] in (TimeoutType.SCHEDULE_TO_CLOSE.name,
                           TimeoutType.SCHEDULE_TO_START.name)
    # Backoffs of 1, 2 and 4 days between the four attempts.
    assert outcomes[1:] == ["attempt 4 failed", "7 days"]


async def test_sleep_moves_the_clock_and_auto_skipping_can_be_disabled() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[UpdatableTimer]):
            now = await env.get_current_time()
            with env.auto_time_skipping_disabled():
                handle = await env.client.start_workflow(
                    UpdatableTimer.run, now + timedelta(days=1), id="timer", task_queue=Q)
                await env.sleep(timedelta(hours=2))
                assert await env.get_current_time() - now >= timedelta(hours=2)
                assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
                # Moved earlier by a signal: it wakes at the new time.
                new_time = now + timedelta(hours=5)
                await handle.signal(UpdatableTimer.update_wake_up_time, new_time)
                assert await handle.query(UpdatableTimer.get_wake_up_time) == new_time
                # Not awaited with skipping on: real time passes, nothing fires.
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(handle.result(), 0.5)
            woke = await handle.result()
            assert new_time <= woke < new_time + timedelta(minutes=1)


async def test_schedules_follow_the_skipped_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[Ping]):
            handle = await env.client.create_schedule("daily", Schedule(
                action=ScheduleActionStartWorkflow(Ping.run, id="ping", task_queue=Q),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))])))
            await env.sleep(timedelta(days=3, minutes=1))
            desc = await handle.describe()
            assert desc.info.num_actions == 3
            times = [a.scheduled_at for a in desc.info.recent_actions]
            assert [b - a for a, b in itertools.pairwise(times)] == \
                [timedelta(days=1)] * 2
            await handle.delete()


@workflow.defn
class FailsLater:
    @workflow.run
    async def run(self) -> None:
        await asyncio.sleep(3600)
        raise ApplicationError("an hour later", non_retryable=True)


async def test_failures_still_fail_under_skipping() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[FailsLater]):
            with pytest.raises(WorkflowFailureError) as err:
                await env.client.execute_workflow(FailsLater.run, id="fails", task_queue=Q)
    assert isinstance(err.value.cause, ApplicationError)
    # Shut down, the engine's clock is wall time again.
    assert abs(_clock.now_ms() / 1000 - time.time()) < 1


@workflow.defn
class Stamp:
    @workflow.run
    async def run(self) -> str:
        return workflow.now().isoformat()


async def test_delayed_starts_and_cron_follow_the_skipped_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[Stamp]):
            now = await env.get_current_time()
            stamp = await env.client.execute_workflow(Stamp.run, id="later", task_queue=Q,
                                                      start_delay=timedelta(days=2))
            assert datetime.fromisoformat(stamp) - now >= timedelta(days=2)

            handle = await env.client.start_workflow(Stamp.run, id="noon", task_queue=Q,
                                                     cron_schedule="0 12 * * *")
            await env.sleep(timedelta(days=3))
            runs = [r async for r in env.client.list_workflows("WorkflowId = 'noon'")]
            done = sorted(r.run_id for r in runs
                          if r.status == WorkflowExecutionStatus.COMPLETED)
            assert len(done) == 3
            for run_id in done:
                at = datetime.fromisoformat(await env.client.get_workflow_handle(
                    "noon", run_id=run_id).result(follow_runs=False))
                assert (at.hour, at.minute) == (12, 0)
            await handle.terminate()


@workflow.defn
class SlowOnFirstDay:
    """Outlives its one-hour run timeout on the first run of its chain (a day's sleep), then
    finishes at once; says what it knows of the run before."""

    @workflow.run
    async def run(self) -> str:
        info = workflow.info()
        if info.continued_run_id is None:
            await asyncio.sleep(timedelta(days=1).total_seconds())
        last = workflow.get_last_failure() if info.cron_schedule else None
        return f"attempt {info.attempt}|{type(last).__name__}"


async def test_a_run_timeout_is_retried_or_followed_by_the_next_cron_run() -> None:
    # Temporal's rules: a run timeout is retried by the retry policy; without one, a cron
    # workflow goes on with its next run; only the execution timeout ends the chain.
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[SlowOnFirstDay]):
            retried = await env.client.start_workflow(
                SlowOnFirstDay.run, id="retried", task_queue=Q,
                run_timeout=timedelta(hours=1),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1),
                                         maximum_attempts=2))
            assert await asyncio.wait_for(retried.result(), WALL_LIMIT_S) == "attempt 2|NoneType"

            cron = await env.client.start_workflow(
                SlowOnFirstDay.run, id="cron", task_queue=Q, cron_schedule="0 * * * *",
                run_timeout=timedelta(hours=1))
            await env.sleep(timedelta(hours=3))
            runs = [r async for r in env.client.list_workflows("WorkflowId = 'cron'")]
            statuses = sorted(WorkflowExecutionStatus(r.status).name for r in runs)
            assert statuses.count("TIMED_OUT") == 1 and "COMPLETED" in statuses, statuses
            # The run after the one that timed out sees the timeout as its last failure.
            second = min((r for r in runs if r.status == WorkflowExecutionStatus.COMPLETED),
                         key=lambda r: r.start_time)
            assert await env.client.get_workflow_handle(
                "cron", run_id=second.run_id).result(follow_runs=False) == "attempt 1|TimeoutError"
            await cron.terminate()


async def test_the_updatable_timer_sample_flow() -> None:
    # The flow of Temporal's samples-python updatable_timer test, written for this workflow:
    # query and signal a run that sleeps for a day, then await its result with skipping.
    async with await WorkflowEnvironment.start_time_skipping() as env:
        async with Worker(env.client, task_queue=Q, workflows=[UpdatableTimer]):
            now = await env.get_current_time()
            in_a_day, in_an_hour = now + timedelta(days=1), now + timedelta(hours=1)
            handle = await env.client.start_workflow(UpdatableTimer.run, in_a_day,
                                                     id="sample-timer", task_queue=Q)
            assert await handle.query(UpdatableTimer.get_wake_up_time) == in_a_day
            await handle.signal(UpdatableTimer.update_wake_up_time, in_an_hour)
            assert await handle.query(UpdatableTimer.get_wake_up_time) == in_an_hour
            woke = await handle.result()
            assert in_an_hour <= woke < in_a_day


_env: list[WorkflowEnvironment] = []


@activity.defn
async def outlives_its_timeout() -> str:
    # As with Temporal's test server: an activity sleeps on the environment's clock, past its
    # own start-to-close timeout (the sleep releases the activity's hold on the clock).
    await _env[0].sleep(timedelta(days=11))
    return "finished"


@workflow.defn
class TenDayActivity:
    @workflow.run
    async def run(self) -> str:
        try:
            return await workflow.execute_activity(
                outlives_its_timeout, start_to_close_timeout=timedelta(days=10),
                retry_policy=RetryPolicy(maximum_attempts=1))
        except ActivityError as err:
            assert isinstance(err.cause, TimeoutError)
            return err.cause.type.name


async def test_a_running_activity_times_out_on_the_skipped_clock() -> None:
    async with await WorkflowEnvironment.start_time_skipping() as env:
        _env[:] = [env]
        async with Worker(env.client, task_queue=Q, workflows=[TenDayActivity],
                          activities=[outlives_its_timeout]):
            wall = time.monotonic()
            outcome = await env.client.execute_workflow(TenDayActivity.run, id="ten-days",
                                                        task_queue=Q)
            assert time.monotonic() - wall < WALL_LIMIT_S
    assert outcome == TimeoutType.START_TO_CLOSE.name
