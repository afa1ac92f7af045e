"""replay_frame on real runs, on both backends: the recorded events beside the current code."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pandas as pd
import pytest
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.notebook import replay_frame
from dbosify.worker import Worker

from ._flows import ACTIVITIES, TIMEOUT, WORKFLOWS, Approval, add_one


@workflow.defn(name="Approval")
class ApprovalSleepsFirst:
    """The changed cell: waits for approval before the first activity."""

    def __init__(self) -> None:
        self.approved: bool | None = None

    @workflow.run
    async def run(self, x: int) -> int:
        await workflow.wait_condition(lambda: self.approved is not None)
        y = await workflow.execute_activity(add_one, x, start_to_close_timeout=TIMEOUT)
        return await workflow.execute_activity(add_one, y, start_to_close_timeout=TIMEOUT)

    @workflow.signal
    def approve(self, ok: bool = True) -> None:
        self.approved = ok

    @workflow.update
    def decide(self, ok: bool) -> str:
        self.approved = ok
        return "approved"


@workflow.defn(name="Approval")
class ApprovalPatched(Approval):
    """A compatible change: the new step is behind workflow.patched()."""

    @workflow.run
    async def run(self, x: int) -> int:
        if workflow.patched("extra-step"):
            await workflow.sleep(0.01)
        return await super().run(x)


async def _approved_run(client: Client, workflow_id: str, *, by_update: bool) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id=workflow_id, task_queue="q")
        if by_update:
            assert await handle.execute_update(Approval.decide, True) == "approved"
        else:
            await handle.signal(Approval.approve, True)
        assert await handle.result() == 3


@pytest.mark.parametrize("by_update", [False, True], ids=["signal", "update"])
async def test_same_code_replays_and_changed_code_diverges(
        client: Client, by_update: bool) -> None:
    await _approved_run(client, "ap-r", by_update=by_update)
    frame = replay_frame(client, "ap-r", workflows=[Approval])
    assert list(frame.columns) == ["event_id", "event_type", "name", "recorded", "command",
                                   "status", "diverged", "note"]
    assert not frame["diverged"].any() and frame.attrs["diverged_at"] is None
    assert set(frame["status"]) <= {"match", "input", ""}
    matched = frame[frame.status == "match"]
    assert matched["recorded"].tolist() == matched["command"].tolist()
    assert "ScheduleActivity add_one #1" in matched["command"].tolist()
    fed = frame[frame.status == "input"]["command"].tolist()
    if not by_update:
        assert "SignalWorkflow approve" in fed
    else:
        accepted = frame[frame.event_type == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"].iloc[0]
        assert accepted["note"].startswith("fed as DoUpdate decide")
        assert any(str(c).startswith("UpdateResponse accepted") for c in matched["command"])
        assert any(str(c).startswith("UpdateResponse completed") for c in matched["command"])

    changed = replay_frame(client, "ap-r", workflows={"Approval": ApprovalSleepsFirst})
    assert changed["diverged"].sum() == 1
    at = changed.attrs["diverged_at"]
    first = changed.iloc[at]
    assert first["event_type"] == "ACTIVITY_TASK_SCHEDULED"
    assert first["recorded"] == "ScheduleActivity add_one #1"
    assert first["command"] != first["recorded"]
    assert (changed.iloc[at + 1:]["status"] == "not replayed").all()
    html = changed._repr_html_()
    assert html.count("background-color:#fdd") == 1

    # temporalio's Replayer fails on the same history, at the same event.
    history = await client.get_workflow_handle("ap-r").fetch_history()
    replayer = Replayer(workflows=[ApprovalSleepsFirst],
                        workflow_runner=UnsandboxedWorkflowRunner())
    with pytest.raises(NondeterminismError) as info:
        await replayer.replay_workflow(history)
    named = re.search(r"HistoryEvent\(id: (\d+)", str(info.value))
    if named is not None:
        assert int(named.group(1)) == first["event_id"]
    await Replayer(workflows=[Approval],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


async def test_patched_change_replays_from_a_saved_history(client: Client,
                                                           tmp_path: Path) -> None:
    await _approved_run(client, "ap-s", by_update=False)
    history = await client.get_workflow_handle("ap-s").fetch_history()
    path = tmp_path / "ap-s.json"
    path.write_text(history.to_json())
    frame = replay_frame(path, workflows=ApprovalPatched)
    assert not frame["diverged"].any()
    assert frame["event_id"].tolist() == list(range(1, len(history.events) + 1))
    assert replay_frame(str(path), workflows=[ApprovalSleepsFirst])["diverged"].any()
    assert isinstance(frame.iloc[:3], pd.DataFrame)


async def test_replay_of_a_waiting_run(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="ap-w", task_queue="q")
        assert await _stage(handle) == "waiting"
        frame = replay_frame(handle, workflows=[Approval])
        assert not frame["diverged"].any()
        assert replay_frame(handle, workflows=[ApprovalSleepsFirst])["diverged"].sum() == 1
        await handle.terminate("test over")


async def _stage(handle: object) -> str:
    import asyncio

    for _ in range(200):
        stage = await handle.query(Approval.where)  # type: ignore[attr-defined]
        if stage == "waiting":
            return str(stage)
        await asyncio.sleep(0.02)
    return str(stage)


def test_replay_frame_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replay_frame(tmp_path / "nope.json", workflows=[Approval])


async def test_replay_frame_needs_the_workflow_class(client: Client) -> None:
    await _approved_run(client, "ap-x", by_update=False)
    with pytest.raises(ValueError, match="workflow_id"):
        replay_frame(client)
    with pytest.raises(LookupError, match="'Approval'"):
        replay_frame(client, "ap-x", workflows=[])
    with pytest.raises(LookupError, match="%%workflow"):
        replay_frame(client, "ap-x")
    with pytest.raises(TypeError, match=r"not a @workflow\.defn"):
        replay_frame(client, "ap-x", workflows=[int])


@activity.defn
async def linger() -> None:
    # Runs until cancelled, so the workflow's cancel always finds it running.
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.02)


@workflow.defn
class Busy:
    """Cancels an activity and a timer, writes memo, signals another run, answers an update
    that sleeps: commands Core answers itself inside a task, and protocol messages."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        await workflow.get_external_workflow_handle("other").signal(Approval.approve, True)
        slow = workflow.start_activity(linger, start_to_close_timeout=TIMEOUT,
                                       heartbeat_timeout=TIMEOUT)
        await workflow.sleep(0.01)
        slow.cancel()
        try:
            await slow
        except Exception:
            pass
        pending = asyncio.ensure_future(workflow.sleep(100))
        await workflow.sleep(0.01)
        pending.cancel()
        workflow.upsert_memo({"stage": "waiting"})
        await workflow.wait_condition(lambda: self.go)
        return "done"

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.update
    async def bump(self, n: int) -> int:
        await workflow.sleep(0.01)
        return n + 1


async def test_a_busy_run_replays_as_temporal_replays_it(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=[*WORKFLOWS, Busy],
                      activities=[*ACTIVITIES, linger]):
        other = await client.start_workflow(Approval.run, 1, id="other", task_queue="q")
        handle = await client.start_workflow(Busy.run, id="busy", task_queue="q")
        for _ in range(250):
            history = await handle.fetch_history()
            if any(e.HasField("workflow_properties_modified_event_attributes")
                   for e in history.events):
                break
            await asyncio.sleep(0.02)
        assert await handle.execute_update(Busy.bump, 3) == 4
        await handle.signal(Busy.proceed)
        assert await handle.result() == "done"
        assert await other.result() == 3
    history = await handle.fetch_history()
    kinds = {e.WhichOneof("attributes") for e in history.events}
    assert {"activity_task_cancel_requested_event_attributes", "timer_canceled_event_attributes",
            "signal_external_workflow_execution_initiated_event_attributes",
            "workflow_execution_update_completed_event_attributes"} <= kinds
    frame = replay_frame(history, workflows=[Busy])
    assert not frame["diverged"].any(), frame[frame.status != ""].to_string()
    await Replayer(workflows=[Busy],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@workflow.defn(name="OneTimer")
class OneTimerLonger:
    """The golden timer run's workflow, changed: it sleeps for another duration first."""

    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds * 2)
        await workflow.sleep(seconds)
        return f"slept {seconds}s"


@pytest.mark.parametrize("workflow_id", ["golden-activity", "golden-timer", "golden-retry"])
def test_saved_golden_histories_replay_offline(workflow_id: str) -> None:
    from golden.workflows import WORKFLOWS as GOLDEN_WORKFLOWS

    frame = replay_frame(GOLDEN / f"{workflow_id}.json", workflows=GOLDEN_WORKFLOWS)
    assert not frame["diverged"].any()
    assert (frame["status"] == "match").sum() >= 2


async def test_a_saved_golden_history_diverges_where_the_replayer_fails() -> None:
    from dbosify.client import WorkflowHistory

    path = GOLDEN / "golden-timer.json"
    frame = replay_frame(path, workflows=[OneTimerLonger])
    first = frame.iloc[frame.attrs["diverged_at"]]
    # Core matches a timer by its sequence number, so a changed duration is no divergence:
    # the extra timer at the end is.
    assert first["event_type"] == "WORKFLOW_EXECUTION_COMPLETED"
    assert first["command"].startswith("StartTimer 2")
    history = WorkflowHistory.from_json("golden-timer", path.read_text())
    with pytest.raises(NondeterminismError) as info:
        await Replayer(workflows=[OneTimerLonger],
                       workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)
    named = re.search(r"HistoryEvent\(id: (\d+)", str(info.value))
    assert named is not None and int(named.group(1)) == first["event_id"]
