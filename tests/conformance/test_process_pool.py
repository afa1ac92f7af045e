"""Sync activities in child processes (issue 9 §5): ``activity_executor=ProcessPoolExecutor()``
with ``shared_state_manager=SharedStateManager.create_from_multiprocessing(...)``, heartbeats and
cancellation included, as under temporalio's Worker. Each test runs on SQLite and on Postgres.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import pytest

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.exceptions import ActivityError, CancelledError
from dbosify.worker import SharedStateManager, Worker

Q = "process-pool-q"


@activity.defn
def crunch(steps: int) -> str:
    """Runs in a child process: heartbeats its progress, stops when cancelled."""
    start = activity.info().heartbeat_details[0] if activity.info().heartbeat_details else 0
    for step in range(start, steps):
        if activity.is_cancelled():
            raise CancelledError(f"stopped at step {step}")
        activity.heartbeat(step)
        time.sleep(0.05)
    return f"{steps} steps in process {os.getpid()}"


@workflow.defn
class Crunch:
    def __init__(self) -> None:
        self.stop = False

    @workflow.run
    async def run(self, steps: int) -> str:
        handle = workflow.start_activity(
            crunch, steps, start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=5),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.wait_condition(lambda: self.stop or handle.done())
        if not handle.done():
            handle.cancel()
        try:
            return await handle
        except ActivityError as err:
            return f"cancelled: {err.cause}"

    @workflow.signal
    def cancel_it(self) -> None:
        self.stop = True


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[ProcessPoolExecutor, SharedStateManager]]:
    # fork: the children inherit this test module, so its activities unpickle by name.
    context = multiprocessing.get_context("fork")
    manager = context.Manager()
    executor = ProcessPoolExecutor(max_workers=2, mp_context=context)
    try:
        yield executor, SharedStateManager.create_from_multiprocessing(manager)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        manager.shutdown()


def _worker(client: Client, pool: tuple[ProcessPoolExecutor, SharedStateManager]) -> Worker:
    executor, manager = pool
    return Worker(client, task_queue=Q, workflows=[Crunch], activities=[crunch],
                  activity_executor=executor, shared_state_manager=manager)


async def test_sync_activity_in_a_child_process(
        client: Client, pool: tuple[ProcessPoolExecutor, SharedStateManager]) -> None:
    async with _worker(client, pool):
        result = await client.execute_workflow(Crunch.run, 3, id=f"pp-{uuid.uuid4().hex[:8]}",
                                               task_queue=Q)
    steps, _, pid = result.rpartition(" ")
    assert steps == "3 steps in process"
    assert int(pid) != os.getpid()


async def test_cancel_reaches_the_child_process(
        client: Client, pool: tuple[ProcessPoolExecutor, SharedStateManager]) -> None:
    async with _worker(client, pool):
        handle = await client.start_workflow(Crunch.run, 400, id=f"pp-{uuid.uuid4().hex[:8]}",
                                             task_queue=Q)
        await asyncio.sleep(0.5)  # Let it heartbeat a few steps.
        await handle.signal(Crunch.cancel_it)
        result = await handle.result()
    assert result.startswith("cancelled: ")


async def test_process_pool_needs_a_shared_state_manager(client: Client) -> None:
    with pytest.raises(ValueError, match="shared_state_manager"):
        Worker(client, task_queue=Q, activities=[crunch],
               activity_executor=ProcessPoolExecutor(max_workers=1))
