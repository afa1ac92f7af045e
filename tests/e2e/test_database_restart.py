"""A database restart loses nothing (issue 10): Postgres is restarted twice while 100 runs are in
flight on two worker processes; every run completes once, with its right result.

It restarts the machine's Postgres cluster (``pg_ctlcluster ... restart``), which breaks every
other connection to it for a moment: it runs only when ``DBOSIFY_TEST_RESTART_POSTGRES=1``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify.client import Client, WorkflowHandle

from ._app import Restartable
from .conftest import Cluster

pytestmark = pytest.mark.slow

RUNS = 100


def _cluster_version() -> str | None:
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    return versions[-1] if versions else None


def _restart_postgres(version: str) -> float:
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)
    return time.monotonic() - started


async def _result(handle: WorkflowHandle[Any, str]) -> str:
    # This test process's own client rides out the restart by asking again.
    deadline = time.monotonic() + 180
    while True:
        try:
            return await handle.result()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_postgres_restarts_under_load_lose_nothing(client: Client, cluster: Cluster,
                                                         database: str) -> None:
    if not database.startswith("postgresql"):
        pytest.skip("restarts a Postgres server")
    version = _cluster_version()
    if os.environ.get("DBOSIFY_TEST_RESTART_POSTGRES") != "1" or version is None or \
            shutil.which("pg_ctlcluster") is None:
        pytest.skip("set DBOSIFY_TEST_RESTART_POSTGRES=1 on a machine whose Postgres cluster "
                    "this test may restart (pg_ctlcluster)")
    workers = [cluster.start("restart", f"e2e-restart-{n}") for n in range(2)]
    for worker in workers:
        await cluster.ready(worker)
    handles = [await client.start_workflow(Restartable.run, n, id=f"restartable-{n}",
                                           task_queue="restart") for n in range(RUNS)]
    await cluster.wait_for(lambda: len(cluster.marks(event="done")) >= RUNS // 2,
                           "runs to make progress")
    down_s = [_restart_postgres(version)]
    await cluster.wait_for(lambda: len(cluster.marks(event="done")) >= RUNS * 3 // 2,
                           "runs to make progress after the first restart", timeout=120)
    down_s.append(_restart_postgres(version))
    results = await asyncio.gather(*(_result(h) for h in handles))
    assert results == [f"{n}:r0-r1-r2" for n in range(RUNS)], cluster.logs_text()
    for worker in workers:
        assert worker.popen.poll() is None, worker.log_tail()
    for handle in handles:
        history = await handle.fetch_history()
        closes = [e.event_type for e in history.events if e.event_type in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED)]
        assert closes == [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]
    done = Counter((m["wf"], m["act"]) for m in cluster.marks(event="done"))
    reruns = sum(count - 1 for count in done.values())
    print(f"postgres restarts took {down_s}; activity re-runs: {reruns}")
    assert len(done) == RUNS * 3
