"""Temporal's Schedule API through temporalio's own client, on SQLite and on Postgres.

The first test follows temporalio's own ``test_schedule_basics`` (what a Temporal server
answers); the rest check firing, overlap policies, catch-up, limits and bad input.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from dbosify import workflow
from dbosify._runtime._process import current_process
from dbosify._store import _tables as t
from dbosify.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from dbosify.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

Q = "sched-q"
T = TypeVar("T")


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


@workflow.defn
class Waiter:
    """Runs until signalled (or cancelled)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.done)
        return "finished"

    @workflow.signal
    def finish(self) -> None:
        self.done = True


@workflow.defn
class Fails:
    @workflow.run
    async def run(self) -> str:
        raise ApplicationError("broken", non_retryable=True)


async def eventually(fn: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     timeout: float = 15.0) -> T:
    """Poll ``fn`` until ``check`` holds on its value; fail with the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if check(value) or asyncio.get_running_loop().time() > deadline:
            assert check(value), f"condition never held; last value: {value!r}"
            return value
        await asyncio.sleep(0.1)


def _action(workflow_type: Any = Echo.run, *args: Any, **kwargs: Any
            ) -> ScheduleActionStartWorkflow:
    return ScheduleActionStartWorkflow(workflow_type, *args, id=f"wf-{uuid.uuid4().hex[:8]}",
                                       task_queue=Q, **kwargs)


def _paused(action: ScheduleActionStartWorkflow | None = None,
            overlap: ScheduleOverlapPolicy = ScheduleOverlapPolicy.SKIP, **policy: Any
            ) -> Schedule:
    return Schedule(action=action or _action(Echo.run, "hi"),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                    policy=SchedulePolicy(overlap=overlap, **policy),
                    state=ScheduleState(paused=True))


async def _describe(handle: ScheduleHandle) -> ScheduleDescription:
    return await handle.describe()


def _runs(desc: ScheduleDescription) -> list[ScheduleActionExecutionStartWorkflow]:
    runs = []
    for result in desc.info.recent_actions:
        assert isinstance(result.action, ScheduleActionExecutionStartWorkflow)
        runs.append(result.action)
    return runs


async def test_create_describe_update_pause_delete(client: Client) -> None:
    # As temporalio's own test_schedule_basics: what the server gives back for what was sent.
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "some workflow", ["arg1", "arg2"], id=f"workflow-{uuid.uuid4()}", task_queue=Q,
            execution_timeout=timedelta(hours=1), run_timeout=timedelta(hours=2),
            task_timeout=timedelta(minutes=3),
            retry_policy=RetryPolicy(maximum_attempts=20), memo={"memokey1": "memoval1"}),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(
                second=(ScheduleRange(1, step=1),), minute=(ScheduleRange(2, 3),),
                hour=(ScheduleRange(4, 5, 6),), day_of_month=(ScheduleRange(7),),
                month=(ScheduleRange(9),), year=(ScheduleRange(2080),),
                comment="spec comment 1")],
            intervals=[ScheduleIntervalSpec(every=timedelta(days=10),
                                            offset=timedelta(days=2))],
            cron_expressions=["0 12 * * MON"],
            skip=[ScheduleCalendarSpec(year=(ScheduleRange(2050),))],
            start_at=datetime(2060, 7, 8, 9, 10, 11, tzinfo=timezone.utc),
            jitter=timedelta(seconds=80)),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ONE,
                              catchup_window=timedelta(minutes=5), pause_on_failure=True),
        state=ScheduleState(note="sched note 1", paused=True, limited_actions=True,
                            remaining_actions=30))
    handle = await client.create_schedule(f"schedule-{uuid.uuid4()}", schedule,
                                          memo={"memokey2": "memoval2"})

    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    schedule.action.args = await DataConverter.default.encode(schedule.action.args)
    assert schedule.action.retry_policy
    schedule.action.retry_policy.maximum_interval = timedelta(seconds=100)
    assert schedule.action.memo
    schedule.action.memo = {k: (await DataConverter.default.encode([v]))[0]
                            for k, v in schedule.action.memo.items()}
    schedule.spec.cron_expressions = []
    assert isinstance(schedule.spec.calendars, list)
    schedule.spec.calendars.append(ScheduleCalendarSpec(
        second=(ScheduleRange(0),), minute=(ScheduleRange(0),), hour=(ScheduleRange(12),),
        day_of_month=(ScheduleRange(1, 31),), month=(ScheduleRange(1, 12),),
        day_of_week=(ScheduleRange(1),)))

    desc = await handle.describe()
    assert desc.id == handle.id
    assert desc.schedule == schedule
    assert await desc.memo_value("memokey2") == "memoval2"
    # Nothing before start_at; the interval, calendars and cron all count after it.
    assert desc.info.next_action_times
    assert all(t >= datetime(2060, 7, 8, 9, 10, 11, tzinfo=timezone.utc)
               for t in desc.info.next_action_times)

    def update_timeout(input: ScheduleUpdateInput) -> ScheduleUpdate:
        assert input.description.schedule == schedule
        assert isinstance(input.description.schedule.action, ScheduleActionStartWorkflow)
        input.description.schedule.action.task_timeout = timedelta(minutes=7)
        return ScheduleUpdate(schedule=input.description.schedule)

    await handle.update(update_timeout)
    desc = await handle.describe()
    assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)
    assert desc.schedule.action.task_timeout == timedelta(minutes=7)
    updated_at = desc.info.last_updated_at
    assert updated_at is not None
    await handle.update(lambda input: None)
    assert (await handle.describe()).info.last_updated_at == updated_at

    with pytest.raises(ScheduleAlreadyRunningError):
        await client.create_schedule(handle.id, desc.schedule)

    await handle.pause()
    desc = await handle.describe()
    assert desc.schedule.state.paused and desc.schedule.state.note == "Paused via Python SDK"
    await handle.unpause(note="back on")
    desc = await handle.describe()
    assert not desc.schedule.state.paused and desc.schedule.state.note == "back on"
    await handle.pause(note="test1")
    assert (await handle.describe()).schedule.state.note == "test1"

    await handle.delete()
    with pytest.raises(RPCError) as err:
        await handle.describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND


async def test_trigger_starts_a_run_as_temporal_does(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        action = _action(Echo.run, "scheduled hello", memo={"team": "data"})
        handle = await client.create_schedule("sched-trigger", _paused(action),
                                              trigger_immediately=True)
        desc = await handle.describe()
        assert desc.info.num_actions == 1
        [run] = _runs(desc)
        assert run.workflow_id.startswith(f"{action.id}-")
        stamp = run.workflow_id[len(action.id) + 1:]
        scheduled = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert abs((scheduled - datetime.now(timezone.utc)).total_seconds()) < 30
        wf = client.get_workflow_handle(run.workflow_id, run_id=run.first_execution_run_id)
        assert await wf.result() == "scheduled hello"
        wf_desc = await wf.describe()
        assert await wf_desc.memo_value("team") == "data"
        attrs = wf_desc.typed_search_attributes
        assert attrs.get(SearchAttributeKey.for_keyword("TemporalScheduledById")) == \
            "sched-trigger"
        start = attrs.get(SearchAttributeKey.for_datetime("TemporalScheduledStartTime"))
        assert start is not None and start.replace(microsecond=0) == scheduled
        by_schedule = [w.id async for w in client.list_workflows(
            "TemporalScheduledById = 'sched-trigger'")]
        assert by_schedule == [run.workflow_id]
        desc = await eventually(lambda: _describe(handle), lambda d: not d.info.running_actions)
        assert desc.info.recent_actions[0].action


async def test_interval_fires_every_due_time_once(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        handle = await client.create_schedule(
            "sched-every-second",
            Schedule(action=_action(Echo.run, "tick"),
                     spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
                         every=timedelta(seconds=1))]),
                     policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL)))
        desc = await eventually(lambda: _describe(handle), lambda d: d.info.num_actions >= 3)
        await handle.pause()
        desc = await handle.describe()
    times = [r.scheduled_at for r in desc.info.recent_actions]
    assert times == sorted(times)
    assert all(t.microsecond == 0 for t in times)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    ids = [r.workflow_id for r in _runs(desc)]
    assert len(set(ids)) == len(ids) == desc.info.num_actions


async def test_cron_and_calendar_next_times(client: Client) -> None:
    handle = await client.create_schedule(
        "sched-cal", Schedule(action=_action(), spec=ScheduleSpec(calendars=[
            ScheduleCalendarSpec()]), state=ScheduleState(paused=True)))
    desc = await handle.describe()
    assert desc.schedule.spec.calendars[0] == ScheduleCalendarSpec()
    times = desc.info.next_action_times
    assert len(times) == 10
    for i, when in enumerate(times):
        assert (when.hour, when.minute, when.second) == (0, 0, 0)
        if i:
            assert when == times[i - 1] + timedelta(days=1)

    handle = await client.create_schedule(
        "sched-cron-tz", Schedule(action=_action(), spec=ScheduleSpec(
            cron_expressions=["30 9 * * MON-FRI"], time_zone_name="America/New_York"),
            state=ScheduleState(paused=True)))
    desc = await handle.describe()
    from zoneinfo import ZoneInfo
    for when in desc.info.next_action_times:
        local = when.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute, local.weekday() < 5) == (9, 30, True)
    assert desc.schedule.spec.time_zone_name == "America/New_York"

    every = await client.create_schedule(
        "sched-every-form", Schedule(action=_action(), spec=ScheduleSpec(
            cron_expressions=["@every 90m/15m"]), state=ScheduleState(paused=True)))
    desc = await every.describe()
    assert desc.schedule.spec.intervals == [ScheduleIntervalSpec(
        every=timedelta(minutes=90), offset=timedelta(minutes=15))]
    for when in desc.info.next_action_times:
        assert (when.timestamp() - 15 * 60) % (90 * 60) == 0


async def test_bad_input_is_a_clear_error(client: Client) -> None:
    with pytest.raises(RPCError) as err:
        await client.create_schedule("bad-cron", Schedule(
            action=_action(), spec=ScheduleSpec(cron_expressions=["61 * * * *"])))
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "minute" in str(err.value) and "0-59" in str(err.value)
    with pytest.raises(RPCError) as err:
        await client.create_schedule("bad-cron2", Schedule(
            action=_action(), spec=ScheduleSpec(cron_expressions=["every day"])))
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "cron string 'every day'" in str(err.value)
    with pytest.raises(RPCError) as err:
        await client.create_schedule("bad-tz", Schedule(
            action=_action(), spec=ScheduleSpec(cron_expressions=["0 * * * *"],
                                                time_zone_name="Mars/Olympus")))
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
    assert "unknown time zone 'Mars/Olympus'" in str(err.value)
    await client.create_schedule("taken", _paused())
    with pytest.raises(ScheduleAlreadyRunningError):
        await client.create_schedule("taken", _paused())
    with pytest.raises(RPCError) as err:
        await client.get_schedule_handle("never-made").describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND
    # Nothing stored was lost to the failed calls.
    assert [s.id async for s in await client.list_schedules()] == ["taken"]


async def test_backfill_is_inclusive_and_deduplicated(client: Client) -> None:
    begin = datetime(2020, 1, 20, 5, tzinfo=timezone.utc)
    handle = await client.create_schedule(
        "sched-backfill",
        Schedule(action=_action(), spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(
            every=timedelta(minutes=1))]), state=ScheduleState(paused=True)),
        backfill=[ScheduleBackfill(start_at=begin - timedelta(minutes=30),
                                   end_at=begin - timedelta(minutes=29),
                                   overlap=ScheduleOverlapPolicy.ALLOW_ALL)])
    assert (await handle.describe()).info.num_actions == 2
    await handle.backfill(
        ScheduleBackfill(start_at=begin - timedelta(minutes=4),
                         end_at=begin - timedelta(minutes=2),
                         overlap=ScheduleOverlapPolicy.ALLOW_ALL),
        ScheduleBackfill(start_at=begin - timedelta(minutes=2), end_at=begin,
                         overlap=ScheduleOverlapPolicy.ALLOW_ALL))
    desc = await handle.describe()
    assert desc.info.num_actions == 7
    ids = [r.workflow_id for r in _runs(desc)]
    assert ids[-1].endswith("-2020-01-20T05:00:00Z")
    assert len(set(ids)) == 7


async def _signal_all(client: Client, desc: ScheduleDescription) -> None:
    for run in desc.info.running_actions:
        await client.get_workflow_handle(run.workflow_id, run_id=run.first_execution_run_id
                                         ).signal(Waiter.finish)


async def _paused_per_minute(client: Client, schedule_id: str,
                             overlap: ScheduleOverlapPolicy) -> ScheduleHandle:
    """A paused schedule of ``Waiter`` runs every minute: only backfills start them."""
    return await client.create_schedule(schedule_id, Schedule(
        action=_action(Waiter.run),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]),
        policy=SchedulePolicy(overlap=overlap), state=ScheduleState(paused=True)))


async def _fill(handle: ScheduleHandle, minute: int, overlap: ScheduleOverlapPolicy) -> None:
    at = datetime(2021, 3, 1, 0, minute, tzinfo=timezone.utc)
    await handle.backfill(ScheduleBackfill(start_at=at, end_at=at, overlap=overlap))


@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "buffer_all", "allow_all"])
async def test_overlap_policies(client: Client, overlap: str) -> None:
    policy = ScheduleOverlapPolicy[overlap.upper()]
    async with Worker(client, task_queue=Q, workflows=[Waiter]):
        handle = await _paused_per_minute(client, f"sched-{overlap}", policy)
        for minute in (1, 2, 3):  # Three actions while the first still runs.
            await _fill(handle, minute, policy)
        desc = await handle.describe()
        running = len(desc.info.running_actions)
        if policy == ScheduleOverlapPolicy.SKIP:
            assert (running, desc.info.num_actions) == (1, 1)
        elif policy == ScheduleOverlapPolicy.BUFFER_ONE:
            assert (running, desc.info.num_actions) == (1, 1)
        elif policy == ScheduleOverlapPolicy.BUFFER_ALL:
            assert (running, desc.info.num_actions) == (1, 1)
        else:
            assert (running, desc.info.num_actions) == (3, 3)
        # Finish what runs, as often as buffered starts follow.
        expected_total = {"skip": 1, "buffer_one": 2, "buffer_all": 3, "allow_all": 3}[overlap]

        async def finish_running() -> ScheduleDescription:
            current = await handle.describe()
            await _signal_all(client, current)
            return current

        desc = await eventually(finish_running,
                                lambda d: d.info.num_actions == expected_total
                                and not d.info.running_actions)
        for run in _runs(desc):
            wf = await client.get_workflow_handle(run.workflow_id,
                                                  run_id=run.first_execution_run_id).describe()
            assert wf.status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.parametrize("overlap", ["terminate_other", "cancel_other"])
async def test_overlap_stops_the_other(client: Client, overlap: str) -> None:
    policy = ScheduleOverlapPolicy[overlap.upper()]
    async with Worker(client, task_queue=Q, workflows=[Waiter]):
        handle = await _paused_per_minute(client, f"sched-{overlap}", policy)
        await _fill(handle, 1, policy)
        first = _runs(await handle.describe())[0]
        await _fill(handle, 2, policy)
        first_handle = client.get_workflow_handle(first.workflow_id,
                                                  run_id=first.first_execution_run_id)
        expected = WorkflowExecutionStatus.TERMINATED if policy == \
            ScheduleOverlapPolicy.TERMINATE_OTHER else WorkflowExecutionStatus.CANCELED

        async def status() -> Any:
            return (await first_handle.describe()).status

        await eventually(status, lambda s: s == expected)
        desc = await eventually(lambda: _describe(handle), lambda d: d.info.num_actions == 2
                                and len(d.info.running_actions) == 1)
        assert desc.info.running_actions[0].workflow_id.endswith("T00:02:00Z")
        await _signal_all(client, desc)


async def test_limited_actions_and_pause_on_failure(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Echo, Fails]):
        limited = await client.create_schedule(
            "sched-limited", Schedule(
                action=_action(Echo.run, "x"),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=1))]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL),
                state=ScheduleState(limited_actions=True, remaining_actions=2)))
        failing = await client.create_schedule(
            "sched-fails", Schedule(
                action=_action(Fails.run),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                policy=SchedulePolicy(pause_on_failure=True)), trigger_immediately=True)
        desc = await eventually(lambda: _describe(failing), lambda d: d.schedule.state.paused)
        assert "failed" in (desc.schedule.state.note or "")
        desc = await eventually(lambda: _describe(limited), lambda d: d.info.num_actions == 2)
        assert desc.schedule.state.remaining_actions == 0
        assert desc.info.next_action_times == []
        await asyncio.sleep(1.5)
        assert (await limited.describe()).info.num_actions == 2


async def test_catchup_window_decides_missed_times(client: Client) -> None:
    # Created with no worker running; then five due times lie in the past, as if every worker
    # had been down. One schedule's window covers them, the other's does not.
    # Due times every two minutes, placed so the last one passed a minute ago and the next
    # comes in a minute, whatever the wall clock says: none lies inside the short window.
    now_s = int(datetime.now(timezone.utc).timestamp())
    spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(
        every=timedelta(minutes=2), offset=timedelta(seconds=(now_s + 60) % 120))])
    action = _action(Echo.run, "late")
    short = await client.create_schedule("sched-short", Schedule(
        action=action, spec=spec, policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=timedelta(seconds=10))))
    long = await client.create_schedule("sched-long", Schedule(
        action=_action(Echo.run, "late"), spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL)))
    process = current_process()
    assert process is not None
    past = (now_s - 60 - 4 * 120) * 1000
    with process.store.engine.begin() as conn:
        conn.execute(sa.update(t.schedules).values(next_nominal_ms=past, next_due_ms=past))
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        desc = await eventually(lambda: _describe(long), lambda d: d.info.num_actions >= 5)
        missed = await eventually(lambda: _describe(short),
                                  lambda d: d.info.num_actions_missed_catchup_window >= 5)
    assert missed.info.num_actions == 0
    first = desc.info.recent_actions[0].scheduled_at
    assert int(first.timestamp() * 1000) == past


async def test_list_schedules_with_query(client: Client) -> None:
    key = SearchAttributeKey.for_keyword("Team")
    for i in range(4):
        await client.create_schedule(
            f"listed-{i}", _paused(), search_attributes=TypedSearchAttributes(
                [SearchAttributePair(key, "data" if i % 2 else "web")]))
    assert [s.id async for s in await client.list_schedules(page_size=3)] == \
        [f"listed-{i}" for i in range(4)]
    assert [s.id async for s in await client.list_schedules("Team = 'data'")] == \
        ["listed-1", "listed-3"]
    assert [s.id async for s in await client.list_schedules(
        "ScheduleId STARTS_WITH 'listed-' AND TemporalSchedulePaused = true AND Team != 'data'")] \
        == ["listed-0", "listed-2"]
    [listed] = [s async for s in await client.list_schedules("ScheduleId = 'listed-1'")]
    assert listed.schedule.state.paused
    assert listed.schedule.action.workflow == "Echo"  # type: ignore[attr-defined]
    with pytest.raises(RPCError) as err:
        [s async for s in await client.list_schedules("Team = ")]
    assert err.value.status == RPCStatusCode.INVALID_ARGUMENT


@workflow.defn
class CronCount:
    """Counts its runs through the last completion result; fails on run 2 if asked."""

    @workflow.run
    async def run(self, fail_second: bool) -> int:
        last = workflow.get_last_completion_result(int) if workflow.has_last_completion_result() \
            else 0
        failure = workflow.get_last_failure()
        if fail_second and last == 1 and failure is None:
            raise ApplicationError("second run fails", non_retryable=True)
        return (last or 0) + 1


async def test_cron_schedule_on_start_workflow(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[CronCount]):
        started = datetime.now(timezone.utc)
        handle = await client.start_workflow(CronCount.run, True, id="cron-count",
                                             task_queue=Q, cron_schedule="@every 1s")
        first = await handle.describe()
        assert first.status == WorkflowExecutionStatus.RUNNING
        assert first.execution_time is not None and first.execution_time >= \
            started.replace(microsecond=0)

        async def runs() -> list[Any]:
            return [r async for r in client.list_workflows("WorkflowId = 'cron-count'")]

        listed = await eventually(runs, lambda rs: sum(
            r.status != WorkflowExecutionStatus.RUNNING for r in rs) >= 4)
        await handle.terminate("enough")  # Terminating the current run ends the cron.
        closed = sorted((r for r in listed if r.status != WorkflowExecutionStatus.RUNNING),
                        key=lambda r: r.start_time)
        statuses = [r.status for r in closed]
        assert statuses[:4] == [WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED,
                                WorkflowExecutionStatus.COMPLETED,
                                WorkflowExecutionStatus.COMPLETED]
        results = []
        for run in closed[:4]:
            if run.status == WorkflowExecutionStatus.COMPLETED:
                results.append(await client.get_workflow_handle(
                    run.id, run_id=run.run_id).result(follow_runs=False))
        # The failed run keeps the last result: the run after it counts on from 1.
        assert results == [1, 2, 3]
        # One chain: every run has the first run as its first execution.
        assert {r.raw_info.first_run_id for r in listed} == {first.run_id}
        count = len(await runs())
        await asyncio.sleep(1.5)
        assert len(await runs()) == count  # No run after the termination.
        with pytest.raises(RPCError) as err:
            await client.start_workflow(CronCount.run, False, id="cron-bad", task_queue=Q,
                                        cron_schedule="every minute")
        assert err.value.status == RPCStatusCode.INVALID_ARGUMENT
        assert "invalid cron schedule" in str(err.value)


@pytest.mark.parametrize("case", ["none-keeps", "empty-clears", "partial-replaces"])
async def test_update_replaces_schedule_search_attributes(client: Client, case: str) -> None:
    key_1, key_2 = SearchAttributeKey.for_text("SaOne"), SearchAttributeKey.for_keyword("SaTwo")
    handle = await client.create_schedule("sched-sa", _paused(), search_attributes=(
        TypedSearchAttributes([SearchAttributePair(key_1, "v1"), SearchAttributePair(key_2, "v2")])))

    def change(input: ScheduleUpdateInput) -> ScheduleUpdate:
        assert input.description.typed_search_attributes[key_1] == "v1"
        if case == "none-keeps":
            return ScheduleUpdate(input.description.schedule, search_attributes=None)
        if case == "empty-clears":
            return ScheduleUpdate(input.description.schedule,
                                  search_attributes=TypedSearchAttributes.empty)
        return ScheduleUpdate(input.description.schedule, search_attributes=TypedSearchAttributes(
            [SearchAttributePair(key_1, "v1-new")]))

    await handle.update(change)
    attrs = (await handle.describe()).typed_search_attributes
    expected = {"none-keeps": {key_1: "v1", key_2: "v2"}, "empty-clears": {},
                "partial-replaces": {key_1: "v1-new"}}[case]
    assert {pair.key: pair.value for pair in attrs} == expected


@workflow.defn
class Chain:
    """Returns the last completed run's result plus one; fails when told to by its input."""

    @workflow.run
    async def run(self, fail_after: int) -> int:
        last = workflow.get_last_completion_result(int) \
            if workflow.has_last_completion_result() else 0
        failure = workflow.get_last_failure()
        if (last or 0) == fail_after and failure is None:
            raise ApplicationError("failing once", non_retryable=True)
        return (last or 0) + (100 if failure is not None else 1)


async def test_sequential_actions_see_the_last_result_and_failure(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Chain]):
        handle = await client.create_schedule("sched-chain", _paused(
            _action(Chain.run, 2), ScheduleOverlapPolicy.BUFFER_ALL))
        at = datetime(2022, 5, 1, tzinfo=timezone.utc)
        await handle.backfill(ScheduleBackfill(start_at=at, end_at=at + timedelta(hours=3),
                                               overlap=ScheduleOverlapPolicy.BUFFER_ALL))
        desc = await eventually(lambda: _describe(handle), lambda d: d.info.num_actions == 4
                                and not d.info.running_actions)
        outcomes = []
        for run in _runs(desc):
            wf = client.get_workflow_handle(run.workflow_id, run_id=run.first_execution_run_id)
            try:
                outcomes.append(await wf.result())
            except WorkflowFailureError:
                outcomes.append("failed")
    # 1, 2, then the third fails (it saw 2), the fourth sees 2 and that failure.
    assert outcomes == [1, 2, "failed", 102]
