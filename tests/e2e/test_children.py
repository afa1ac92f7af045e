"""Child workflows across processes, with the parent's worker SIGKILLed (DESIGN §9.5, issue 10):
the child runs in another process (the one serving its task queue), its start is recorded before
it acts and sent once, and its result reaches the parent's next worker through the parent's
inbox."""

from __future__ import annotations

import pytest

from dbosify.client import Client
from dbosify.worker import Replayer, UnsandboxedWorkflowRunner

from ._app import CHILD_STARTING_LINE, CHILD_WAITING_LINE, ChildGate, ChildParent
from .conftest import Cluster, result_of

pytestmark = pytest.mark.slow

PARENT_QUEUE = "e2e-child-parent"
KID_QUEUE = "e2e-child-kid"


@pytest.mark.parametrize("line", [CHILD_STARTING_LINE, CHILD_WAITING_LINE])
async def test_parent_killed_while_its_child_runs(client: Client, cluster: Cluster,
                                                  line: str) -> None:
    """Killed on ``CHILD_STARTING`` the parent's worker dies once the task asking for the child
    is recorded and before the start is carried out; on ``CHILD_WAITING``, once the child runs.
    Either way the child runs its activity once, has one run, and the parent gets its result."""
    kids = cluster.start(KID_QUEUE, "e2e-kids")
    parent_worker = cluster.start(PARENT_QUEUE, "e2e-parents", kill_on=line)
    await cluster.ready(kids)
    await cluster.ready(parent_worker)
    wid = f"child-parent-{line.lower()}"
    handle = await client.start_workflow(ChildParent.run, KID_QUEUE, id=wid,
                                         task_queue=PARENT_QUEUE)
    await cluster.wait_for(lambda: parent_worker.popen.poll() is not None,
                           f"the parents' worker to die on {line}")
    assert parent_worker.killed_on == f"{line} {wid}"
    if line == CHILD_STARTING_LINE:
        # Recorded, not carried out: the child does not exist until the parent is recovered.
        assert [r async for r in client.list_workflows(f"WorkflowId = '{wid}-kid'")] == []
    else:
        # The child finishes while its parent has no worker: its close waits in the inbox.
        await cluster.wait_for(lambda: cluster.marks(act=f"kid-{wid}", event="start") or None,
                               "the child's activity to start")
        cluster.release()
        kid = client.get_workflow_handle(f"{wid}-kid")
        assert await result_of(kid, cluster) == f"kid-{wid}"
    # The same identity on the same host: it takes its dead predecessor's runs at once.
    again = cluster.start(PARENT_QUEUE, "e2e-parents")
    await cluster.ready(again)
    await cluster.wait_for(lambda: cluster.marks(act=f"kid-{wid}", event="start") or None,
                           "the child's activity to start")
    cluster.release()
    assert await result_of(handle, cluster) == f"parent got kid-{wid}"
    assert len(cluster.marks(act=f"kid-{wid}", event="start")) == 1
    assert [m["pid"] for m in cluster.marks(act=f"kid-{wid}")] == [kids.pid, kids.pid]
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{wid}-kid'")]
    assert len(runs) == 1 and runs[0].parent_id == wid
    history = await handle.fetch_history()
    await Replayer(workflows=[ChildParent, ChildGate],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


async def test_parent_and_child_in_one_killed_worker(client: Client, cluster: Cluster) -> None:
    """Parent and child on one task queue, in the worker that is killed: the next worker of
    the same identity resumes both; the child has one run and the parent gets its result."""
    worker = cluster.start(PARENT_QUEUE, "e2e-family", kill_on=CHILD_WAITING_LINE)
    await cluster.ready(worker)
    wid = "child-parent-same-process"
    handle = await client.start_workflow(ChildParent.run, PARENT_QUEUE, id=wid,
                                         task_queue=PARENT_QUEUE)
    await cluster.wait_for(lambda: worker.popen.poll() is not None,
                           f"the worker to die on {CHILD_WAITING_LINE}")
    again = cluster.start(PARENT_QUEUE, "e2e-family")
    await cluster.ready(again)
    await cluster.wait_for(lambda: cluster.marks(act=f"kid-{wid}", event="start", pid=again.pid)
                           or None, "the child's activity to start in the new worker")
    cluster.release()
    assert await result_of(handle, cluster) == f"parent got kid-{wid}"
    # At least once, as any activity: it may have started in the killed worker too.
    assert len(cluster.marks(act=f"kid-{wid}", event="done")) == 1
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{wid}-kid'")]
    assert len(runs) == 1 and runs[0].parent_id == wid
