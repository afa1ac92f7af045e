"""Runs in flight when dbosify is upgraded recover (issue 10): ``inflight-v1.sqlite`` was left
by a worker of record format 1 killed with four runs in flight (see
``tests/golden/make_inflight.py``); today's engine takes them over and completes each one, without
running again an activity whose outcome was recorded."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify._records import RECORD_FORMAT
from dbosify._runtime._process import APPLICATION_VERSION, close_current
from dbosify.client import Client
from dbosify.worker import Worker

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN.parent))

from golden import inflight  # noqa: E402


@pytest.fixture
def gates() -> Iterator[None]:
    inflight.gates_open = True
    inflight.executions.clear()
    yield
    inflight.gates_open = False


@pytest.fixture
async def old_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    close_current()
    # The killed worker's identity named another host, perhaps: take its runs after a short
    # lease rather than waiting out the default one.
    monkeypatch.setenv("DBOSIFY_LEASE_SECONDS", "1")
    copy = tmp_path / "inflight.sqlite"
    shutil.copyfile(GOLDEN / "inflight-v1.sqlite", copy)
    yield await Client.connect(f"sqlite:///{copy}")
    close_current()


def test_application_version_does_not_follow_the_record_format() -> None:
    # DBOS recovers only workflows of its own application version: a version derived from the
    # record format would strand every run in flight at an upgrade.
    assert RECORD_FORMAT >= 2
    assert APPLICATION_VERSION == "dbosify-1"


async def test_runs_in_flight_under_format_1_recover(old_client: Client, gates: None) -> None:
    client = old_client
    async with Worker(client, task_queue=inflight.TASK_QUEUE, workflows=inflight.WORKFLOWS,
                      activities=inflight.ACTIVITIES, identity=inflight.IDENTITY):
        waiting = client.get_workflow_handle("waits-for-signal")
        await waiting.signal(inflight.WaitsForSignal.proceed, "go")
        results = await asyncio.wait_for(asyncio.gather(*(
            client.get_workflow_handle(workflow_id).result()
            for workflow_id, _ in inflight.RUNS)), 60)
        assert results == ["a-go-b", "g1-s1", "s2-g2", "s3-slept"]
        # Outcomes recorded before the upgrade are not run again; the activities that were
        # running when the old worker died run again (at least once), and the rest once.
        assert inflight.executions == {"b": 1, "g1": 1, "s1": 1, "g2": 1}
        # Each history is whole across the formats: the tasks of format 1, then of format 2.
        for (workflow_id, _), activities in zip(inflight.RUNS, [2, 2, 2, 1], strict=True):
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            types = [e.event_type for e in history.events]
            assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
            assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == activities
            assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == activities
