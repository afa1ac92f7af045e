"""A local activity survives its worker's SIGKILL as Temporal's does (issue 9 §4): once the
activation that received its result is recorded (the ``core_local_activity`` marker of the
history), a recovered run replays that result and never calls the activity again."""

from __future__ import annotations

import json

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client
from dbosify.worker import Replayer, UnsandboxedWorkflowRunner

from ._app import LOCAL_DONE_LINE, LOCAL_FILE, LOCAL_RAN_LINE, LocalThenWait
from .conftest import Cluster, result_of

pytestmark = pytest.mark.slow

QUEUE = "e2e-local"


async def test_local_activity_result_survives_a_kill(client: Client, cluster: Cluster) -> None:
    worker = cluster.start(QUEUE, "e2e-local", kill_on=LOCAL_DONE_LINE)
    await cluster.ready(worker)
    wid = "local-then-wait"
    handle = await client.start_workflow(LocalThenWait.run, id=wid, task_queue=QUEUE)
    await cluster.wait_for(lambda: worker.popen.poll() is not None,
                           f"the worker to die on {LOCAL_DONE_LINE}")
    # What the workflow prints after the result is held until the activation holding it (and
    # so the marker) is recorded: the kill comes after that commit.
    assert worker.killed_on == f"{LOCAL_DONE_LINE} {wid}"
    assert f"{LOCAL_RAN_LINE} {wid}" in worker.log.read_text()
    lines = (cluster.markers / LOCAL_FILE).read_text().splitlines()
    assert lines == [f"{wid} attempt 1 pid {worker.pid}"]

    again = cluster.start(QUEUE, "e2e-local")
    await cluster.ready(again)
    await handle.signal(LocalThenWait.proceed)
    assert await result_of(handle, cluster) == lines[0]
    # Not called again: one line in the file, one start, and the new worker printed nothing of it.
    assert (cluster.markers / LOCAL_FILE).read_text().splitlines() == lines
    assert len(cluster.marks(act=f"local-{wid}", event="start")) == 1
    assert LOCAL_RAN_LINE not in again.log.read_text()

    history = await handle.fetch_history()
    markers = [e.marker_recorded_event_attributes for e in history.events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert [m.marker_name for m in markers] == ["core_local_activity"]
    assert json.loads(markers[0].details["result"].payloads[0].data) == lines[0]
    await Replayer(workflows=[LocalThenWait],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


async def test_local_activity_cut_short_runs_again(client: Client, cluster: Cluster) -> None:
    """Killed after the activity ran and before its result was recorded, the run calls it
    again on recovery (at least once, as on Temporal, where the marker was not written)."""
    worker = cluster.start(QUEUE, "e2e-local", kill_on=LOCAL_RAN_LINE)
    await cluster.ready(worker)
    wid = "local-cut-short"
    handle = await client.start_workflow(LocalThenWait.run, id=wid, task_queue=QUEUE)
    await cluster.wait_for(lambda: worker.popen.poll() is not None,
                           f"the worker to die on {LOCAL_RAN_LINE}")
    again = cluster.start(QUEUE, "e2e-local")
    await cluster.ready(again)
    await cluster.wait_for(lambda: LOCAL_DONE_LINE in again.log.read_text() or None,
                           "the recovered run to receive the result")
    await handle.signal(LocalThenWait.proceed)
    lines = (cluster.markers / LOCAL_FILE).read_text().splitlines()
    assert lines == [f"{wid} attempt 1 pid {worker.pid}", f"{wid} attempt 1 pid {again.pid}"]
    assert await result_of(handle, cluster) == lines[1]
    await Replayer(workflows=[LocalThenWait], workflow_runner=UnsandboxedWorkflowRunner()
                   ).replay_workflow(await handle.fetch_history())
