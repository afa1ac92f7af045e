"""Golden histories and stored records replay unchanged (DESIGN §9.1).

``tests/golden`` holds, for three small runs made by ``make_golden.py`` (one activity, a timer, an
activity that fails once and succeeds on retry), each run's Temporal history as JSON and the
SQLite database that stored them. An upgrade of temporalio, DBOS or dbosify's record format that
breaks replay of what is already stored fails here: temporalio's ``Replayer`` must accept the
histories and dbosify's engine must answer queries on the stored runs by replaying their records,
while changed workflow code must be rejected by both as nondeterministic.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from golden.workflows import (
    ACTIVITIES,
    RUNS,
    TASK_QUEUE,
    WORKFLOWS,
    OneTimer,
    RecordsSteps,
)
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.service import RPCStatusCode
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from dbosify import activity, workflow
from dbosify._runtime._process import close_current
from dbosify.client import Client, RPCError, WorkflowHistory
from dbosify.common import RetryPolicy
from dbosify.worker import Worker

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TIMEOUT = timedelta(seconds=10)


def golden_history(workflow_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id, (GOLDEN / f"{workflow_id}.json").read_text())


def without_task_identity(history: WorkflowHistory) -> list[HistoryEvent]:
    events = []
    for event in history.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        for name in ("workflow_task_started_event_attributes",
                     "workflow_task_completed_event_attributes"):
            if copy.HasField(name):
                getattr(copy, name).ClearField("identity")
        events.append(copy)
    return events


# Changed code: same workflow names, other commands ----------------------------------------------

@activity.defn
async def greet_v2(name: str) -> str:
    return f"Hi, {name}!"


@activity.defn
async def flaky_v2(name: str) -> str:
    return name


@workflow.defn(name="OneActivity")
class OneActivityOtherType(RecordsSteps):
    """Another activity type in the same place."""

    @workflow.run
    async def run(self, name: str) -> str:
        self.steps.append("started")
        result = await workflow.execute_activity(greet_v2, name, start_to_close_timeout=TIMEOUT)
        self.steps.append(result)
        return result


@workflow.defn(name="OneActivity")
class OneActivityAsTimer(RecordsSteps):
    """A timer where the activity was."""

    @workflow.run
    async def run(self, name: str) -> str:
        self.steps.append("started")
        await workflow.sleep(1)
        return f"Hello, {name}!"


@workflow.defn(name="OneTimer")
class OneTimerAsActivity(RecordsSteps):
    """An activity where the timer was."""

    @workflow.run
    async def run(self, seconds: float) -> str:
        self.steps.append("started")
        await workflow.execute_activity(greet_v2, "x", start_to_close_timeout=TIMEOUT)
        return f"slept {seconds}s"


@workflow.defn(name="RetriedActivity")
class RetriedActivityOtherType(RecordsSteps):
    """Another activity type in the same place."""

    @workflow.run
    async def run(self, name: str) -> str:
        self.steps.append("started")
        result = await workflow.execute_activity(
            flaky_v2, name, start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=3))
        self.steps.append(result)
        return result


CHANGED: list[tuple[str, type, str, str]] = [
    # (workflow id, changed class, what the history recorded, what the code now issues)
    ("golden-activity", OneActivityOtherType, "type='greet'", "type='greet_v2'"),
    ("golden-activity", OneActivityAsTimer, "schedule_activity(seq=1, type='greet')",
     "start_timer(seq=1)"),
    ("golden-timer", OneTimerAsActivity, "start_timer(seq=1)",
     "schedule_activity(seq=1, type='greet_v2')"),
    ("golden-retry", RetriedActivityOtherType, "type='flaky'", "type='flaky_v2'"),
]
CHANGED_IDS = [f"{wid}-{cls.__name__}" for wid, cls, _, _ in CHANGED]


# (a), (b): temporalio's Replayer on the stored histories ----------------------------------------

def test_golden_files_are_complete() -> None:
    assert {p.name for p in GOLDEN.glob("*.json")} == {f"{r[0]}.json" for r in RUNS}
    assert (GOLDEN / "golden.sqlite").stat().st_size < 1_000_000
    retry = json.loads((GOLDEN / "golden-retry.json").read_text())
    started = [e for e in retry["events"]
               if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"]
    assert [e["activityTaskStartedEventAttributes"]["attempt"] for e in started] == [2]


@pytest.mark.parametrize("run", RUNS, ids=[r[0] for r in RUNS])
async def test_replayer_accepts_golden_history(run: tuple[str, type, Any, Any]) -> None:
    workflow_id, cls, _, _ = run
    result = await Replayer(workflows=WORKFLOWS).replay_workflow(golden_history(workflow_id))
    assert result.replay_failure is None
    assert result.history.workflow_id == workflow_id
    assert cls.__name__ in (GOLDEN / f"{workflow_id}.json").read_text()


@pytest.mark.parametrize(("workflow_id", "changed", "recorded", "issued"), CHANGED,
                         ids=CHANGED_IDS)
async def test_replayer_rejects_changed_code(workflow_id: str, changed: type, recorded: str,
                                             issued: str) -> None:
    with pytest.raises(workflow.NondeterminismError):
        # Unsandboxed: the sandbox would refuse this test module's imports, not the change.
        await Replayer(workflows=[changed], workflow_runner=UnsandboxedWorkflowRunner()
                       ).replay_workflow(golden_history(workflow_id))


# (c): dbosify's engine on the stored records ----------------------------------------------------

@pytest.fixture
async def golden_client(tmp_path: Path) -> AsyncIterator[Client]:
    """A client on a copy of the golden database (the copy may be migrated forward)."""
    close_current()
    copy = tmp_path / "golden.sqlite"
    shutil.copyfile(GOLDEN / "golden.sqlite", copy)
    yield await Client.connect(f"sqlite:///{copy}")
    close_current()


async def test_engine_replays_stored_records(golden_client: Client) -> None:
    async with Worker(golden_client, task_queue=TASK_QUEUE, workflows=WORKFLOWS,
                      activities=ACTIVITIES):
        for workflow_id, cls, _arg, expected in RUNS:
            handle = golden_client.get_workflow_handle(workflow_id)
            assert await handle.result() == expected
            # The closed run's records are replayed through the engine's instance machinery.
            steps = await handle.query(cls.steps_done)  # type: ignore[attr-defined]
            final = "slept" if cls is OneTimer else expected
            assert steps == ["started", final]
            # Its history, rebuilt from the stored records, is still the golden one (but for
            # workflow-task identities: not stored, they name the process that reads the run).
            rebuilt = await handle.fetch_history()
            assert without_task_identity(rebuilt) == \
                without_task_identity(golden_history(workflow_id))


@pytest.mark.parametrize(("workflow_id", "changed", "recorded", "issued"), CHANGED,
                         ids=CHANGED_IDS)
async def test_engine_rejects_changed_code(golden_client: Client, workflow_id: str,
                                           changed: type, recorded: str, issued: str) -> None:
    async with Worker(golden_client, task_queue=TASK_QUEUE, workflows=[changed],
                      activities=[greet_v2, flaky_v2]):
        handle = golden_client.get_workflow_handle(workflow_id)
        with pytest.raises(RPCError) as info:
            await handle.query(changed.steps_done)  # type: ignore[attr-defined]
    assert info.value.status == RPCStatusCode.FAILED_PRECONDITION
    message = info.value.message
    assert "nondeterminism" in message and repr(workflow_id) in message
    assert "at event 0" in message
    assert recorded in message.split(" but ")[0] and issued in message.split(" but ")[1]


# The same runs today, on both backends: same shape as the golden histories -----------------------

async def test_runs_today_match_golden_shape(client: Client) -> None:
    def shape(history: WorkflowHistory) -> list[tuple[str, str]]:
        out = []
        for event in history.events:
            attrs = event.activity_task_scheduled_event_attributes
            detail = attrs.activity_type.name if event.HasField(
                "activity_task_scheduled_event_attributes") else ""
            out.append((EventType.Name(event.event_type), detail))
        return out

    async with Worker(client, task_queue=TASK_QUEUE, workflows=WORKFLOWS,
                      activities=ACTIVITIES):
        for workflow_id, cls, arg, expected in RUNS:
            handle = await client.start_workflow(cls.run, arg, id=workflow_id,  # type: ignore[attr-defined]
                                                 task_queue=TASK_QUEUE)
            assert await handle.result() == expected
            history = await handle.fetch_history()
            assert shape(history) == shape(golden_history(workflow_id))
            await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    # Changed code is rejected on these fresh records too (queries on closed runs replay them).
    async with Worker(client, task_queue=TASK_QUEUE, workflows=[OneActivityOtherType]):
        with pytest.raises(RPCError, match="nondeterminism"):
            await client.get_workflow_handle("golden-activity").query(
                OneActivityOtherType.steps_done)
