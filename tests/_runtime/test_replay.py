"""replay_history marks the first divergence where temporalio's Replayer raises (DESIGN §5).

Each case drives a real temporalio workflow instance by hand (tests/history/_drive.py), builds
its history, and replays it with the same code and with changed code: both through
:func:`dbosify._runtime._replay.replay_history` and through temporalio's own ``Replayer``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from history import _workflows as w
from history._drive import Driver, drive, signal
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from dbosify._runtime._replay import (
    DIVERGED,
    INPUT,
    MATCH,
    NEW,
    NOT_REPLAYED,
    SKIPPED,
    replay_history,
)


async def temporal_replay(cls: type, history: WorkflowHistory) -> BaseException | None:
    replayer = Replayer(workflows=[cls], workflow_runner=UnsandboxedWorkflowRunner())
    try:
        await replayer.replay_workflow(history)
    except Exception as err:
        return err
    return None


CASES: list[tuple[type, tuple[Any, ...], list[Any], type, int | None]] = [
    # (recorded code, its args, signals, changed code, event id Core names, if it names one)
    (w.OneActivity, (3,), [], w.OneActivityOtherType, None),
    (w.OneActivity, (3,), [], w.OneActivityAsTimer, 5),
    (w.Greeter, (), [signal("set_name", "ann")], w.GreeterIgnoringSignals, 9),
    (w.Patched, (), [], w.PatchRemovedOldBranch, None),
    (w.Fails, (), [], w.Succeeds, 10),
    (w.Charge, (), [], w.ChargeUncaught, 11),
]


@pytest.mark.parametrize(("recorded", "args", "signals", "changed", "core_event"), CASES,
                         ids=[f"{c[0].__name__}-{c[3].__name__}" for c in CASES])
async def test_divergence_is_where_the_replayer_fails(
        recorded: type, args: tuple[Any, ...], signals: list[Any], changed: type,
        core_event: int | None) -> None:
    driver = await drive(recorded, *args, activities=w.ACTIVITIES, signals=signals)
    history = driver.workflow_history()

    same = await replay_history(history.events, recorded, workflow_id=history.workflow_id)
    assert not same.diverged
    assert await temporal_replay(recorded, history) is None
    assert {r.status for r in same.rows} <= {MATCH, INPUT, ""}

    report = await replay_history(history.events, changed, workflow_id=history.workflow_id)
    err = await temporal_replay(changed, history)
    assert isinstance(err, NondeterminismError)
    assert report.divergence is not None
    assert [r for r in report.rows if r.diverged] == [report.divergence]
    named = re.search(r"HistoryEvent\(id: (\d+)", str(err))
    if core_event is not None:
        assert named is not None and int(named.group(1)) == core_event
        assert report.divergence.event_id == core_event
    # Rows before the divergence were replayed, rows after it were not.
    at = report.rows.index(report.divergence)
    assert all(r.status != NOT_REPLAYED for r in report.rows[:at])
    assert all(r.status == NOT_REPLAYED for r in report.rows[at + 1:] if r.event_id)


async def test_rows_show_recorded_and_given_commands() -> None:
    driver = await drive(w.OneActivity, 3, activities=w.ACTIVITIES)
    history = driver.workflow_history()
    report = await replay_history(history.events, w.OneActivityOtherType)
    by_id = {r.event_id: r for r in report.rows}
    assert by_id[1].status == INPUT and by_id[1].command == "InitializeWorkflow OneActivity"
    assert by_id[5].recorded == "ScheduleActivity double #1"
    assert by_id[5].command == "ScheduleActivity triple #1"
    assert by_id[5].status == DIVERGED and by_id[5].name == "double"
    assert [r.event_id for r in report.rows] == [e.event_id for e in history.events]

    same = await replay_history(history.events, w.OneActivity)
    by_id = {r.event_id: r for r in same.rows}
    assert by_id[5].status == MATCH
    done = next(r for r in same.rows if r.event_type == "ACTIVITY_TASK_COMPLETED")
    assert done.status == INPUT and done.command == "ResolveActivity #1 completed"
    assert same.rows[-1].recorded == same.rows[-1].command == "CompleteWorkflowExecution"


@workflow.defn(name="Patched")
class PatchedDeprecated:
    @workflow.run
    async def run(self) -> str:
        workflow.deprecate_patch("v2")
        result: str = await workflow.execute_activity(
            "greet_v2", "ann", start_to_close_timeout=w.TIMEOUT)
        return result


@workflow.defn(name="Patched")
class PatchedDeprecatedRemoved:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_activity(
            "greet_v2", "ann", start_to_close_timeout=w.TIMEOUT)
        return result


async def test_patches_replay_as_core_lets_them() -> None:
    # A history without the patch replays on code that added it (patched() is False there).
    old = (await drive(w.PatchRemovedOldBranch, activities=w.ACTIVITIES)).workflow_history()
    assert not (await replay_history(old.events, w.Patched)).diverged
    assert await temporal_replay(w.Patched, old) is None
    # A deprecated patch's marker may be left out by later code: skipped, not diverged.
    deprecated = (await drive(PatchedDeprecated, activities=w.ACTIVITIES)).workflow_history()
    report = await replay_history(deprecated.events, PatchedDeprecatedRemoved)
    assert not report.diverged
    assert [r.status for r in report.rows if r.event_type == "MARKER_RECORDED"] == [SKIPPED]
    assert await temporal_replay(PatchedDeprecatedRemoved, deprecated) is None


async def test_signals_updates_cancels_and_gathers_replay() -> None:
    for recorded, args, signals in [
        (w.Greeter, (), [signal("set_name", "bo")]),
        (w.Cancels, (), [signal("halt")]),
        (w.Gather, (2,), []),
        (w.Random, (), []),
        (w.Counter, (5,), []),
    ]:
        history = (await drive(recorded, *args, activities=w.ACTIVITIES,
                               signals=signals)).workflow_history()
        report = await replay_history(history.events, recorded)
        assert not report.diverged, (recorded, [r.as_dict() for r in report.rows])
        assert await temporal_replay(recorded, history) is None


async def test_an_open_run_shows_what_the_code_does_next() -> None:
    driver = Driver(w.Greeter)
    await driver.start()
    await driver.activate(signal("set_name", "cy"))
    events = driver.history(final_completion=None)
    report = await replay_history(events, w.Greeter)
    assert not report.diverged
    assert [(r.status, r.command) for r in report.rows if r.status == NEW] == [
        (NEW, "ScheduleActivity greet #1")]
    await driver.close()


def test_a_history_must_start_with_its_started_event() -> None:
    with pytest.raises(ValueError, match="WORKFLOW_EXECUTION_STARTED"):
        import asyncio

        asyncio.run(replay_history([], w.Greeter))
