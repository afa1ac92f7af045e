"""Activities on a task queue that only another process serves (DESIGN §4.2): they run there,
their heartbeats reach the database, and a cancel from the workflow reaches them."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client
from dbosify.worker import Worker

from ._app import CancelRemote, RemoteSteps
from .conftest import Cluster, result_of

pytestmark = pytest.mark.slow

ACTIVITY_QUEUE = "remote-acts"
WORKFLOW_QUEUE = "remote-wf"
ACTIVITY_IDENTITY = "e2e-remote-acts"


async def _activity_worker(cluster: Cluster) -> int:
    proc = cluster.start(ACTIVITY_QUEUE, ACTIVITY_IDENTITY)
    await cluster.ready(proc)
    return proc.pid


async def test_activities_run_in_the_process_serving_their_queue(
        client: Client, cluster: Cluster) -> None:
    pid = await _activity_worker(cluster)
    async with Worker(client, task_queue=WORKFLOW_QUEUE, workflows=[RemoteSteps]):
        handle = await client.start_workflow(RemoteSteps.run, ACTIVITY_QUEUE, id="remote-steps",
                                             task_queue=WORKFLOW_QUEUE)
        assert await result_of(handle, cluster) == "r1-r2"
        history = await handle.fetch_history()
    assert [(m["act"], m["pid"]) for m in cluster.marks(event="done")] == \
        [("r1", pid), ("r2", pid)]
    # The history names the worker that ran each activity, as Temporal's does.
    identities = [e.activity_task_started_event_attributes.identity for e in history.events
                  if e.HasField("activity_task_started_event_attributes")]
    identities += [e.activity_task_completed_event_attributes.identity for e in history.events
                   if e.HasField("activity_task_completed_event_attributes")]
    assert identities == [ACTIVITY_IDENTITY] * 4


@pytest.mark.parametrize(("cancellation_type", "cleanup_before_result"),
                         [("TRY_CANCEL", False), ("WAIT_CANCELLATION_COMPLETED", True)])
async def test_cancel_reaches_an_activity_in_another_process(
        client: Client, cluster: Cluster, cancellation_type: str,
        cleanup_before_result: bool) -> None:
    pid = await _activity_worker(cluster)
    workflow_id = f"remote-cancel-{cancellation_type.lower()}"
    async with Worker(client, task_queue=WORKFLOW_QUEUE, workflows=[CancelRemote]):
        handle = await client.start_workflow(CancelRemote.run,
                                             args=[ACTIVITY_QUEUE, cancellation_type],
                                             id=workflow_id, task_queue=WORKFLOW_QUEUE)
        await cluster.wait_for(lambda: cluster.marks(act="w", event="start") or None,
                               "the remote activity to start")
        await handle.signal(CancelRemote.cancel)
        assert await result_of(handle, cluster) == "cancelled:CancelledError"
        cancelled_at_result = cluster.marks(act="w", event="cancelled")
        marks = await cluster.wait_for(lambda: cluster.marks(act="w", event="cancelled") or None,
                                       "the remote activity to see its cancellation")
    assert [m["pid"] for m in marks] == [pid]
    if cleanup_before_result:
        # WAIT_CANCELLATION_COMPLETED: the workflow resumed only after the attempt ended, which
        # it did on the cancel request.
        assert cancelled_at_result
        assert (marks[0]["requested"], marks[0]["not_found"]) == (True, False)
    else:
        # TRY_CANCEL: the run may close before the attempt's next heartbeat, which then finds
        # its run gone (as on Temporal) rather than the request.
        assert marks[0]["requested"] != marks[0]["not_found"]
    assert not cluster.marks(act="w", event="done")


async def test_an_activity_of_a_closed_run_is_stopped(client: Client, cluster: Cluster) -> None:
    await _activity_worker(cluster)
    async with Worker(client, task_queue=WORKFLOW_QUEUE, workflows=[CancelRemote]):
        handle = await client.start_workflow(CancelRemote.run,
                                             args=[ACTIVITY_QUEUE, "ABANDON"],
                                             id="remote-closed", task_queue=WORKFLOW_QUEUE)
        await cluster.wait_for(lambda: cluster.marks(act="w", event="start") or None,
                               "the remote activity to start")
        await handle.terminate("done with it")
        # As on Temporal, the attempt learns at its next heartbeat that its run is gone.
        marks = await cluster.wait_for(
            lambda: cluster.marks(act="w", event="cancelled") or None,
            "the remote activity of the terminated run to stop")
    assert [(m["requested"], m["not_found"]) for m in marks] == [(False, True)]


async def test_cancel_withdraws_an_attempt_no_worker_took(client: Client) -> None:
    # No process serves the queue: the attempt waits in the table until the cancel withdraws it,
    # and even WAIT_CANCELLATION_COMPLETED resolves at once.
    async with Worker(client, task_queue=WORKFLOW_QUEUE, workflows=[CancelRemote]):
        handle = await client.start_workflow(
            CancelRemote.run, args=["nobody-serves-this", "WAIT_CANCELLATION_COMPLETED"],
            id="remote-unclaimed", task_queue=WORKFLOW_QUEUE)
        await handle.signal(CancelRemote.cancel)
        assert await asyncio.wait_for(handle.result(), 30) == "cancelled:CancelledError"


async def test_history_names_the_worker_that_ran_each_workflow_task(
        client: Client, cluster: Cluster) -> None:
    worker = cluster.start(ACTIVITY_QUEUE, ACTIVITY_IDENTITY)
    await cluster.ready(worker)
    # Run by the worker process, read here: the identity is the worker's, not the reader's.
    handle = await client.start_workflow(RemoteSteps.run, ACTIVITY_QUEUE, id="identity",
                                         task_queue=ACTIVITY_QUEUE)
    assert await result_of(handle, cluster) == "r1-r2"
    history = await handle.fetch_history()
    task_events = [e for e in history.events if e.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)]
    assert len(task_events) == 6
    assert {e.workflow_task_started_event_attributes.identity
            or e.workflow_task_completed_event_attributes.identity
            for e in task_events} == {ACTIVITY_IDENTITY}
