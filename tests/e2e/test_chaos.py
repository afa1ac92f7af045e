"""Chaos: workers SIGKILLed and replaced again and again while runs are in flight.

Every run completes once with its right result, and the test counts activity *re-runs*: an
activity that had finished (its ``done`` marker written) and ran again, because its outcome was
lost with the worker. With each event recorded before the code observes it, that happens only
when a kill falls between an activity's end and the commit of its event (printed, for the
record: ``pytest -s``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client

from ._app import Churn
from .conftest import Cluster

pytestmark = pytest.mark.slow

RUNS = 40
KILLS = 6


async def test_runs_survive_repeated_kills(client: Client, cluster: Cluster,
                                           database: str) -> None:
    queue = "chaos"
    workers = [cluster.start(queue, f"e2e-chaos-{n}") for n in range(2)]
    for worker in workers:
        await cluster.ready(worker)
    handles = [await client.start_workflow(Churn.run, n, id=f"churn-{n}", task_queue=queue)
               for n in range(RUNS)]
    results_task = asyncio.ensure_future(asyncio.gather(*(h.result() for h in handles)))
    kills = 0
    chaos = random.Random(10)
    for round_no in range(KILLS):
        if results_task.done():
            break
        # Kill once some activities have finished since the last kill (no fixed sleep: the
        # kill lands while runs are busy), then replace the worker under the same identity.
        finished = len(cluster.marks(event="done"))
        await cluster.wait_for(lambda f=finished: len(cluster.marks(event="done")) >= f + 10
                               or results_task.done(), "progress between kills", timeout=60)
        # Then a random pause, so the kill is not timed by an activity's end (which would aim
        # it at the moment between an activity's end and its event's commit).
        await asyncio.sleep(chaos.uniform(0.0, 0.3))
        victim = workers[round_no % 2]
        cluster.kill(victim)
        kills += 1
        workers[round_no % 2] = cluster.start(queue, victim.identity)
        await cluster.ready(workers[round_no % 2])
    started = time.monotonic()
    try:
        results = await asyncio.wait_for(results_task, 120)
    except asyncio.TimeoutError:
        raise AssertionError(f"runs did not complete\n{cluster.logs_text()}") from None
    assert results == [f"{n}:c0-c1-c2-c3-c4" for n in range(RUNS)]
    for handle in handles:
        history = await handle.fetch_history()
        closes = [e for e in history.events
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
        assert len(closes) == 1
    done = Counter((m["wf"], m["act"]) for m in cluster.marks(event="done"))
    assert len(done) == RUNS * 5
    reruns = sum(count - 1 for count in done.values())
    backend = database.split(":", 1)[0]
    print(f"\nchaos [{backend}]: {kills} kills, {reruns} activity re-runs "
          f"(finished activities run again), drained in {time.monotonic() - started:.1f}s")
    # A re-run needs a kill between an activity's end and its event's commit: never more
    # than one per run in flight at each kill.
    assert reruns <= kills * 2 * 8
