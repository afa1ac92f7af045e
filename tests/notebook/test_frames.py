"""history_frame and runs_frame on real runs, on both backends (DESIGN §5)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest
from temporalio.exceptions import ApplicationError

from dbosify.client import Client, WorkflowFailureError
from dbosify.notebook import history_frame, runs_frame
from dbosify.worker import Worker

from ._flows import ACTIVITIES, WORKFLOWS, Approval, Refused, Retrying


async def test_history_frame_of_a_handle(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="ap-1", task_queue="q")
        await handle.signal(Approval.approve, True)
        assert await handle.result() == 3
    df = history_frame(handle)
    assert list(df.columns) == ["event_id", "time", "event_type", "name", "attempt", "input",
                                "result", "failure", "duration", "identity"]
    assert isinstance(df["time"].dtype, pd.DatetimeTZDtype)
    assert str(df["time"].dt.tz) == "UTC"
    assert df["duration"].dtype.kind == "m"
    assert df["event_id"].tolist() == list(range(1, len(df) + 1))
    assert df["event_type"].iloc[0] == "WORKFLOW_EXECUTION_STARTED"
    assert df["event_type"].iloc[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    assert df["input"].iloc[0] == [1] and df["name"].iloc[0] == "Approval"
    done = df[df.event_type == "ACTIVITY_TASK_COMPLETED"]
    assert done["name"].tolist() == ["add_one", "add_one"]
    assert done["result"].tolist() == [2, 3]
    assert done["attempt"].tolist() == [1, 1]
    assert (done["duration"] >= pd.Timedelta(0)).all()
    scheduled = df[df.event_type == "ACTIVITY_TASK_SCHEDULED"]
    assert scheduled["input"].tolist() == [[1], [2]]
    assert scheduled["duration"].isna().all()
    signal = df[df.event_type == "WORKFLOW_EXECUTION_SIGNALED"].iloc[0]
    assert signal["name"] == "approve" and signal["input"] == [True]
    fired = df[df.event_type == "TIMER_FIRED"].iloc[0]
    assert fired["name"] == "1" and fired["duration"] >= pd.Timedelta(milliseconds=50)
    assert df["result"].iloc[-1] == 3
    assert df["duration"].iloc[-1] == df["time"].iloc[-1] - df["time"].iloc[0]


async def test_history_frame_shows_updates_retries_and_failures(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 5, id="ap-2", task_queue="q")
        assert await handle.execute_update(Approval.decide, True) == "approved"
        assert await handle.result() == 7
        retried = await client.execute_workflow(Retrying.run, str(uuid.uuid4()), id="re-1",
                                                task_queue="q")
        assert retried == "ok after 2"
        refused = await client.start_workflow(Refused.run, 1, id="rf-1", task_queue="q")
        with pytest.raises(WorkflowFailureError):
            await refused.result()
    df = history_frame(handle)
    accepted = df[df.event_type == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"].iloc[0]
    assert accepted["name"] == "decide" and accepted["input"] == [True]
    completed = df[df.event_type == "WORKFLOW_EXECUTION_UPDATE_COMPLETED"].iloc[0]
    assert completed["name"] == "decide" and completed["result"] == "approved"
    assert completed["duration"] >= pd.Timedelta(0)

    df = history_frame(client.get_workflow_handle("re-1"))
    started = df[df.event_type == "ACTIVITY_TASK_STARTED"].iloc[0]
    assert started["attempt"] == 2
    assert isinstance(started["failure"], ApplicationError)
    assert started["failure"].message == "try again"
    done = df[df.event_type == "ACTIVITY_TASK_COMPLETED"].iloc[0]
    assert done["attempt"] == 2 and done["result"] == "ok after 2" and done["name"] == "flaky"

    df = history_frame(refused)
    failed = df[df.event_type == "ACTIVITY_TASK_FAILED"].iloc[0]
    assert isinstance(failed["failure"], ApplicationError)
    assert failed["failure"].type == "PaymentError"
    assert failed["failure"].details == ({"code": 51},)
    assert df["event_type"].iloc[-1] == "WORKFLOW_EXECUTION_FAILED"
    assert df["failure"].iloc[-1] is not None


async def test_history_frame_of_a_saved_history(client: Client, tmp_path: Path) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="ap-3", task_queue="q")
        await handle.signal(Approval.approve, True)
        await handle.result()
    history = await handle.fetch_history()
    path = tmp_path / "ap-3.json"
    path.write_text(history.to_json())
    from_handle = history_frame(handle)
    for source in (history, history.events, path, str(path), history.to_json(),
                   json.loads(history.to_json())):
        df = history_frame(source)
        pd.testing.assert_frame_equal(df, from_handle)


def test_history_frame_refuses_what_is_no_history(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no history file"):
        history_frame(str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="cannot read a history"):
        history_frame(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="HistoryEvent"):
        history_frame(["not an event"])  # type: ignore[arg-type]


async def test_runs_frame_newest_first(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        first = await client.start_workflow(Approval.run, 1, id="r-1", task_queue="q")
        await first.signal(Approval.approve, True)
        await first.result()
        await client.start_workflow(Approval.run, 2, id="r-2", task_queue="q")
        df = runs_frame(client)
        assert list(df.columns) == ["status", "type", "id", "run_id", "version", "start",
                                    "close", "duration", "task_queue"]
        assert df["id"].tolist() == ["r-2", "r-1"]
        assert df["status"].tolist() == ["RUNNING", "COMPLETED"]
        assert df["type"].tolist() == ["Approval", "Approval"]
        assert df["task_queue"].tolist() == ["q", "q"]
        assert df["run_id"].iloc[1] == first.result_run_id
        assert isinstance(df["start"].dtype, pd.DatetimeTZDtype)
        assert pd.isna(df["close"].iloc[0]) and not pd.isna(df["close"].iloc[1])
        assert df["duration"].iloc[1] == df["close"].iloc[1] - df["start"].iloc[1]
        assert df["duration"].iloc[0] > pd.Timedelta(0)
        running = runs_frame(client, "ExecutionStatus = 'Running'")
        assert running["id"].tolist() == ["r-2"]
        assert runs_frame(client, "WorkflowId = 'nope'").empty
        await client.get_workflow_handle("r-2").terminate("done")


def test_run_version_reads_the_pinned_build_id() -> None:
    from temporalio.api.workflow.v1 import WorkflowExecutionInfo

    from dbosify.history import run_version

    info = WorkflowExecutionInfo()
    assert run_version(info) is None
    info.assigned_build_id = "old"
    assert run_version(info) == "old"
    info.versioning_info.deployment_version.build_id = "abc123"
    assert run_version(info) == "abc123"
    info.versioning_info.versioning_override.pinned.version.build_id = "pinned1"
    assert run_version(info) == "pinned1"



PINGER = '''
from dbosify import workflow


@workflow.defn
class Pinger:
    @workflow.run
    async def run(self) -> str:
        return "pong"
'''


def test_runs_frame_shows_the_version_a_run_is_pinned_to(database: str) -> None:
    import dbosify.notebook as nb

    session, _ = nb.connect(database, notebook="frames-versions")
    try:
        cell = session.define(PINGER)
        session.start("Pinger", id="v-1")
        assert session.result("v-1", 30) == "pong"
        df = runs_frame(session.client)
        assert df["id"].tolist() == ["v-1"]
        assert df["version"].tolist() == [cell.version]
    finally:
        nb.close()
