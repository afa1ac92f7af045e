"""Durability order (issue 10): a command is durable before it acts, an event before workflow
code is seen to observe it.

Each test SIGKILLs a worker at an exact point, either while an activity blocks (found by its
start marker) or on the line the workflow code prints (the kill comes from a thread reading the
worker's output, the moment the line arrives), then lets a worker with newer code recover the
run, and checks what Temporal would give: ``workflow.patched()`` is False exactly when the
unpatched command is in the history, ``workflow.deprecate_patch()`` replays whatever was
recorded, and no activity whose outcome was seen runs again.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client, WorkflowHandle

from ._app import CHAIN_LINE, VERSION_ENV, WAITING_LINE, Chain
from .conftest import Cluster, WorkerProcess, result_of

pytestmark = pytest.mark.slow

RESULT_TIMEOUT = 40.0


async def killed(cluster: Cluster, proc: WorkerProcess) -> None:
    """Wait until ``proc`` was killed on its line."""
    await cluster.wait_for(lambda: proc.popen.poll() is not None, "the worker to be killed")
    assert proc.killed_on is not None, f"exited without the line:\n{proc.log_tail()}"


async def scheduled(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The activities in the run's history, as recorded now (read by this process)."""
    history = await handle.fetch_history()
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


def started(cluster: Cluster, name: str) -> int:
    return len(cluster.marks(act=name, event="start"))


# patched() and deprecate_patch() after a crash in each window ----------------------------------

# Window: what runs when the old worker is killed. "pre"/"old"/"new": that activity (the first
# activation's, or the one the patched branch scheduled) has started and blocks; "waiting": the
# run waits for its signal (killed on the line the code prints just before).
PATCHED = {  # window -> (old version, new version, result)
    ("patched", "pre"): ("1", "2", "pre-new"),
    ("patched", "old"): ("1", "2", "pre-old"),
    ("patched", "waiting"): ("1", "2", "pre-old"),
    ("deprecated", "pre"): ("2", "3", "pre-new"),
    ("deprecated", "new"): ("2", "3", "pre-new"),
    ("deprecated", "waiting"): ("2", "3", "pre-new"),
}


@pytest.mark.parametrize(("rule", "window"), list(PATCHED))
async def test_patch_rules_hold_after_a_crash(client: Client, cluster: Cluster, rule: str,
                                              window: str) -> None:
    old, new, expected = PATCHED[(rule, window)]
    queue = identity = f"e2e-{rule}-{window}"
    waiting = window == "waiting"
    first = cluster.start(queue, identity, env={VERSION_ENV: old},
                          kill_on=WAITING_LINE if waiting else None)
    await cluster.ready(first)
    handle = await client.start_workflow("Versioned", "none" if waiting else window,
                                         id=f"versioned-{rule}-{window}", task_queue=queue)
    if waiting:
        await killed(cluster, first)
    else:
        await cluster.wait_for(lambda: started(cluster, window), f"activity {window} to start")
        cluster.kill(first)
    # Whatever the old worker carried out is in the history already.
    expect_scheduled = {"pre": 1}.get(window, 2)
    assert len(await scheduled(handle)) == expect_scheduled, cluster.logs_text()
    cluster.release()
    second = cluster.start(queue, identity, env={VERSION_ENV: new})
    await cluster.ready(second)
    await handle.signal("proceed")
    assert await result_of(handle, cluster, RESULT_TIMEOUT) == expected
    # The branch not taken never ran; the one taken ran (again, if it was running).
    other = "new" if expected.endswith("old") else "old"
    assert started(cluster, other) == 0, cluster.marks()
    assert started(cluster, "pre") == (2 if window == "pre" else 1), cluster.marks()


async def test_first_activation_is_recorded_before_its_activity_runs(
        client: Client, cluster: Cluster) -> None:
    """Killed while the first activation's activity runs, before anything else is recorded:
    the activity is in the history, so the patched code takes the old branch."""
    queue = identity = "e2e-first-patched"
    first = cluster.start(queue, identity, env={VERSION_ENV: "1"})
    await cluster.ready(first)
    handle = await client.start_workflow("FirstPatched", "old", id="first-patched",
                                         task_queue=queue)
    await cluster.wait_for(lambda: started(cluster, "old"), "activity old to start")
    cluster.kill(first)
    assert await scheduled(handle) == ["checkpoint"]
    assert cluster.recorded_events(handle.result_run_id or "") == 0
    cluster.release()
    second = cluster.start(queue, identity, env={VERSION_ENV: "2"})
    await cluster.ready(second)
    assert await result_of(handle, cluster, RESULT_TIMEOUT) == "old"
    assert started(cluster, "new") == 0


# An event is durable before the code is seen to observe it ------------------------------------

async def test_chain_killed_on_its_printed_line_runs_each_activity_once(
        client: Client, cluster: Cluster) -> None:
    queue = identity = "e2e-chain"
    first = cluster.start(queue, identity, kill_on=f"{CHAIN_LINE} 2")
    await cluster.ready(first)
    handle = await client.start_workflow(Chain.run, args=[1, 3], id="chain", task_queue=queue)
    await killed(cluster, first)
    second = cluster.start(queue, identity)
    await cluster.ready(second)
    assert await result_of(handle, cluster, RESULT_TIMEOUT) == "chain done 3"
    # Run 2's completion was durable before its code printed: its activity ran once.
    assert [started(cluster, f"chain-{n}") for n in (1, 2, 3)] == [1, 1, 1], cluster.marks()
