"""Schedules fired by worker subprocesses: every due time exactly once, across a SIGKILL.

Two worker processes serve the database; a one-second interval schedule runs for about 20 s.
Halfway, the process that fired the latest action is SIGKILLed; the other must go on firing
with no due time missed and none fired twice. Which process fired an action is read from the
run it started (the start request carries the firing worker's identity).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest

from dbosify.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from ._app import Short
from .conftest import Cluster

pytestmark = pytest.mark.slow

QUEUE = "e2e-sched"
PREFIX = "e2e-tick"


def _fired(url: str) -> list[tuple[datetime, str]]:
    """(nominal time, firing worker identity) of every run the schedule started."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    table = "dbosify.dbosify_runs" if url.startswith("postgresql") else "dbosify_runs"
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT workflow_id, start_request FROM {table} WHERE workflow_id LIKE :p"),
                {"p": f"{PREFIX}-%"}).all()
    finally:
        engine.dispose()
    fired = []
    for workflow_id, request in rows:
        stamp = workflow_id[len(PREFIX) + 1:]
        nominal = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        fired.append((nominal, StartWorkflowExecutionRequest.FromString(request).identity))
    return sorted(fired)


async def test_two_workers_fire_each_due_time_once_across_a_kill(
        cluster: Cluster, database: str) -> None:
    workers = [cluster.start(QUEUE, f"sched-worker-{i}") for i in range(2)]
    for proc in workers:
        await cluster.ready(proc)
    client = await Client.connect(database)  # A client only: it never fires.
    created = datetime.now(timezone.utc)
    handle = await client.create_schedule("e2e-every-second", Schedule(
        action=ScheduleActionStartWorkflow(Short.run, 0, id=PREFIX, task_queue=QUEUE),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL)))

    await asyncio.sleep(10)
    before = _fired(database)
    assert before, f"nothing fired in 10 s\n{cluster.logs_text()}"
    victim_identity = before[-1][1]
    [victim] = [p for p in workers if p.identity == victim_identity]
    [survivor] = [p for p in workers if p is not victim]
    killed_at = datetime.fromtimestamp(cluster.kill(victim), timezone.utc)

    await asyncio.sleep(10)
    await handle.pause()
    paused_at = datetime.now(timezone.utc)
    time.sleep(0.5)  # A firing already under way commits (or not) before we count.
    fired = _fired(database)
    desc = await handle.describe()

    times = [nominal for nominal, _ in fired]
    # Exactly once: no time twice, every second from the first to the last, and no second
    # missed at either end.
    assert len(times) == len(set(times)), f"a due time fired twice: {fired}"
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a != timedelta(seconds=1)]
    assert not gaps, f"due times missed between {gaps}\n{cluster.logs_text()}"
    assert times[0] - created < timedelta(seconds=2)
    assert paused_at - times[-1] < timedelta(seconds=2)
    assert len(times) >= 18
    assert desc.info.num_actions == len(times)
    # Before the kill either process may fire (whichever locks the row first); after it, only
    # the survivor.
    by: dict[str, Any] = {}
    for nominal, identity in fired:
        by.setdefault(identity, []).append(nominal)
    assert set(by) <= {victim.identity, survivor.identity}
    assert all(t <= killed_at + timedelta(seconds=1) for t in by.get(victim.identity, []))
    after_kill = [t for t in times if t > killed_at + timedelta(seconds=1)]
    assert len(after_kill) >= 8 and all(t in by[survivor.identity] for t in after_kill)
