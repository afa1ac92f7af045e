"""Crash recovery, durable backoff, scale-out and leases, with workers in subprocesses.

Workers run ``_app.py`` in their own processes and are SIGKILLed at chosen points, found by
waiting for activity markers or for the run's checkpoints; the test process holds only a client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client, WorkflowExecutionStatus, WorkflowHandle

from ._app import (
    BACKOFF_SECONDS,
    TIMER_SECONDS,
    Backoff,
    Blocked,
    Pipeline,
    Progress,
    Short,
    Spanning,
)
from .conftest import Cluster, result_of

pytestmark = pytest.mark.slow

async def assert_closed_once(handle: WorkflowHandle[Any, str]) -> None:
    """The run is completed, and its history closes exactly once."""
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    history = await handle.fetch_history()
    closes = [e for e in history.events if e.event_type in (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)]
    assert [e.event_type for e in closes] == [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]


def run_id_of(handle: WorkflowHandle[Any, str]) -> str:
    assert handle.result_run_id is not None
    return handle.result_run_id


# 1. SIGKILL during an activity, a timer, or between two activities -------------------------------

EXPECTED = {
    "activity": "a-go-b-c",
    "timer": "a-slept-b-c",
    "signal": "a-go-b-c",
}


@pytest.mark.parametrize("mode", ["activity", "timer", "signal"])
async def test_sigkill_and_restart_completes_each_run_once(
        client: Client, cluster: Cluster, mode: str) -> None:
    queue, identity = f"kill-{mode}", f"e2e-kill-{mode}"
    first = cluster.start(queue, identity)
    await cluster.ready(first)
    handle = await client.start_workflow(Pipeline.run, mode, id=f"pipeline-{mode}",
                                         task_queue=queue)
    run_id = run_id_of(handle)
    if mode == "activity":
        # Killed while the gate activity b runs: a's result and the signal are recorded.
        await handle.signal(Pipeline.proceed, "go")
        await cluster.wait_for(lambda: cluster.marks(act="b", event="start"),
                               "activity b to start")
    else:
        # Killed once a's result is checkpointed: the run then sits in its timer, or waits
        # for the signal, with b not yet scheduled.
        await cluster.wait_for(lambda: cluster.recorded_events(run_id) >= 1,
                               "a's result to be checkpointed")
    cluster.kill(first)
    if mode == "activity":
        cluster.release()
    if mode == "signal":
        await handle.signal(Pipeline.proceed, "go")  # Written while no worker lives.

    second = cluster.start(queue, identity)  # Same identity: takes the dead one's runs at once.
    ready_at = await cluster.ready(second)
    assert await result_of(handle, cluster) == EXPECTED[mode]
    await assert_closed_once(handle)

    # a completed before the kill: it ran exactly once, in the first process.
    a = cluster.marks(act="a")
    assert [(m["event"], m["pid"]) for m in a] == [("start", first.pid), ("done", first.pid)]
    # c ran exactly once, in the second process.
    c = cluster.marks(act="c")
    assert [(m["event"], m["pid"]) for m in c] == [("start", second.pid), ("done", second.pid)]
    b = cluster.marks(act="b")
    if mode == "activity":
        # The in-flight activity ran again in the new process, and completed only there.
        assert next(m["pid"] for m in b if m["event"] == "start") == first.pid
        assert [m["pid"] for m in b if m["event"] == "done"] == [second.pid]
        assert any(m["pid"] == second.pid and m["event"] == "start" for m in b)
    else:
        assert [(m["event"], m["pid"]) for m in b] == [("start", second.pid),
                                                       ("done", second.pid)]
    if mode == "timer":
        # The timer is durable: it fires TIMER_SECONDS after it started, not after the restart.
        a_done, b_start = a[-1]["t"], b[0]["t"]
        assert b_start - a_done >= TIMER_SECONDS - 0.05, (a_done, b_start)
        assert b_start < ready_at + TIMER_SECONDS - 0.25, (a_done, ready_at, b_start)


# 2. A durable retry backoff ---------------------------------------------------------------------

async def test_sigkill_during_retry_backoff_resumes_the_wait(
        client: Client, cluster: Cluster) -> None:
    queue, identity = "backoff", "e2e-backoff"
    first = cluster.start(queue, identity)
    await cluster.ready(first)
    handle = await client.start_workflow(Backoff.run, id="backoff", task_queue=queue)
    run_id = run_id_of(handle)
    # Attempt 1 failed and its failure (with the next attempt's time) is checkpointed.
    await cluster.wait_for(lambda: cluster.marks(act="x", event="fail"), "attempt 1 to fail")
    await cluster.wait_for(lambda: cluster.recorded_events(run_id) >= 1,
                           "attempt 1's failure to be checkpointed")
    cluster.kill(first)

    second = cluster.start(queue, identity)
    ready_at = await cluster.ready(second)
    assert await result_of(handle, cluster) == "x@2"
    await assert_closed_once(handle)

    marks = cluster.marks(act="x")
    assert [(m["event"], m["attempt"], m["pid"]) for m in marks] == [
        ("start", 1, first.pid), ("fail", 1, first.pid),
        ("start", 2, second.pid), ("done", 2, second.pid)]
    failed_at, retried_at = marks[1]["t"], marks[2]["t"]
    # The wait counts from attempt 1's failure, not from the restart.
    assert retried_at - failed_at >= BACKOFF_SECONDS - 0.05, (failed_at, retried_at)
    assert retried_at < ready_at + BACKOFF_SECONDS - 0.25, (failed_at, ready_at, retried_at)
    assert retried_at <= max(failed_at + BACKOFF_SECONDS, ready_at) + 3.0, \
        (failed_at, ready_at, retried_at)


async def test_heartbeat_details_survive_a_crash(client: Client, cluster: Cluster) -> None:
    queue, identity = "beats", "e2e-beats"
    first = cluster.start(queue, identity)
    await cluster.ready(first)
    handle = await client.start_workflow(Progress.run, id="beats", task_queue=queue)
    await cluster.wait_for(lambda: cluster.marks(act="p", event="blocked"), "the activity")
    # Past the heartbeat throttle (80 % of 1 s): the latest details are saved, though no
    # attempt has failed (nothing in the run's records carries them).
    await asyncio.sleep(1.2)
    cluster.kill(first)
    cluster.release()
    second = cluster.start(queue, identity)
    await cluster.ready(second)
    # The interrupted attempt's last heartbeat (4 items done) reaches the next attempt.
    assert await result_of(handle, cluster) == "p from 4"
    starts = cluster.marks(act="p", event="start")
    assert [(m["pid"], m["resumed_from"]) for m in starts] == [(first.pid, 0), (second.pid, 4)]


# 3. Scale-out -----------------------------------------------------------------------------------

def skip_unless_postgres(database: str) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("multi-process scale-out is a Postgres feature")


async def test_two_workers_share_one_task_queue(
        database: str, client: Client, cluster: Cluster) -> None:
    skip_unless_postgres(database)
    queue = "scale"
    workers = [cluster.start(queue, "e2e-scale-1"), cluster.start(queue, "e2e-scale-2")]
    for worker in workers:
        await cluster.ready(worker)
    handles = await asyncio.gather(*(
        client.start_workflow(Short.run, 100, id=f"short-{n}", task_queue=queue)
        for n in range(40)))
    results = await asyncio.gather(*(result_of(h, cluster) for h in handles))
    assert results == ["s"] * 40

    starts = cluster.marks(act="s", event="start")
    done = cluster.marks(act="s", event="done")
    assert sorted(m["wf"] for m in starts) == sorted(h.id for h in handles)
    assert sorted(m["wf"] for m in done) == sorted(h.id for h in handles)
    per_pid = Counter(m["pid"] for m in done)
    assert set(per_pid) == {w.pid for w in workers}
    assert min(per_pid.values()) >= 8, per_pid


# 4. Lease takeover ------------------------------------------------------------------------------

LEASE_S = 2.0


async def test_live_worker_takes_over_a_killed_workers_runs_after_the_lease(
        client: Client, cluster: Cluster) -> None:
    # Asked for on Postgres; it holds on SQLite too (several processes on one file), so both.
    queue = "lease"
    workers = [cluster.start(queue, "e2e-lease-1", lease_s=LEASE_S),
               cluster.start(queue, "e2e-lease-2", lease_s=LEASE_S)]
    for worker in workers:
        await cluster.ready(worker)
    handles = [await client.start_workflow(Blocked.run, id=f"blocked-{n}", task_queue=queue)
               for n in range(4)]
    await cluster.wait_for(lambda: len(cluster.marks(act="g", event="start")) == 4,
                           "every gate to start")
    owner = {m["wf"]: m["pid"] for m in cluster.marks(act="g", event="start")}
    counts = Counter(owner.values())
    victim = next(w for w in workers if w.pid == counts.most_common(1)[0][0])
    survivor = next(w for w in workers if w is not victim)
    taken = sorted(wf for wf, pid in owner.items() if pid == victim.pid)
    killed_at = cluster.kill(victim)
    cluster.release()

    results = await asyncio.gather(*(result_of(h, cluster) for h in handles))
    assert results == ["g-after"] * 4
    for handle in handles:
        await assert_closed_once(handle)
    for wf in taken:
        gates = cluster.marks(wf=wf, act="g")
        assert [m["pid"] for m in gates if m["event"] == "done"] == [survivor.pid]
        rerun = [m for m in gates if m["event"] == "start" and m["pid"] == survivor.pid]
        assert len(rerun) == 1
        # The survivor waited out the lease (the victim's identity differs, so no shortcut).
        assert rerun[0]["t"] >= killed_at + LEASE_S / 2, (killed_at, rerun[0]["t"])
        assert [(m["event"], m["pid"]) for m in cluster.marks(wf=wf, act="after")] == [
            ("start", survivor.pid), ("done", survivor.pid)]


# 5. Live processes never take each other's runs --------------------------------------------------

async def test_live_workers_never_take_each_others_runs(
        client: Client, cluster: Cluster) -> None:
    queue = "live"
    # A short lease, and runs that outlive it: only heartbeats keep each owner's runs its own.
    workers = [cluster.start(queue, "e2e-live-1", lease_s=LEASE_S),
               cluster.start(queue, "e2e-live-2", lease_s=LEASE_S)]
    for worker in workers:
        await cluster.ready(worker)
    handles = [await client.start_workflow(Spanning.run, id=f"spanning-{n}", task_queue=queue)
               for n in range(12)]
    results = await asyncio.gather(*(result_of(h, cluster) for h in handles))
    assert results == ["one-two"] * 12

    pids_used: set[int] = set()
    for handle in handles:
        marks = cluster.marks(wf=handle.id)
        # Every activity ran exactly once (no attempt repeated anywhere) ...
        assert Counter((m["act"], m["event"]) for m in marks) == {
            ("one", "start"): 1, ("one", "done"): 1, ("two", "start"): 1, ("two", "done"): 1}
        # ... and in one process: the run had one owner throughout.
        pids = {m["pid"] for m in marks}
        assert len(pids) == 1, (handle.id, marks)
        pids_used |= pids
        await assert_closed_once(handle)
    assert pids_used == {w.pid for w in workers}, "both workers should have owned runs"
