"""A user's pytest suite with pytest-asyncio's function-scoped loops (each test a new loop).

No fixture closes dbosify between tests, as in a user's suite. ``test_3`` leaves a worker
running when its loop ends (as a test killed inside ``async with Worker`` does), and ``test_4``
times out inside ``async with Worker``; the tests after them must work, and the run left on the
dead loop continues on the new loop's worker.
"""

import asyncio
import os
from datetime import timedelta

import pytest

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.worker import Worker

URL = os.environ["DBOSIFY_DATABASE_URL"]
Q = "loops-q"


@activity.defn
def double(x: int) -> int:
    return 2 * x


@workflow.defn
class Doubler:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(double, x,
                                               start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class Waiter:
    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.value is not None)
        assert self.value is not None
        return self.value

    @workflow.signal
    def give(self, value: str) -> None:
        self.value = value

    @workflow.query
    def waiting(self) -> bool:
        return self.value is None


def worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[Doubler, Waiter], activities=[double])


async def test_1() -> None:
    client = await Client.connect(URL)
    async with worker(client):
        assert await client.execute_workflow(Doubler.run, 1, id="one", task_queue=Q) == 2


async def test_2() -> None:
    client = await Client.connect(URL)
    async with worker(client):
        assert await client.execute_workflow(Doubler.run, 2, id="two", task_queue=Q) == 4


async def test_3_left_behind() -> None:
    client = await Client.connect(URL)
    w = worker(client)
    await w.__aenter__()  # Never exited: the loop ends with the worker running.
    handle = await client.start_workflow(Waiter.run, id="left", task_queue=Q)
    assert await handle.query(Waiter.waiting) is True


@pytest.mark.timeout(5)
async def test_4_times_out() -> None:
    client = await Client.connect(URL)
    async with worker(client):
        assert await client.execute_workflow(Doubler.run, 4, id="four", task_queue=Q) == 8
        await asyncio.sleep(60)


async def test_5_after() -> None:
    client = await Client.connect(URL)
    async with worker(client):
        assert await client.execute_workflow(Doubler.run, 5, id="five", task_queue=Q) == 10
        handle = client.get_workflow_handle("left")
        await handle.signal(Waiter.give, "done")
        assert await asyncio.wait_for(handle.result(), 30) == "done"


SHARED: dict[str, Client] = {}


async def shared_client() -> Client:
    """One client for the whole suite (made on the first test's loop), as a session fixture."""
    if "client" not in SHARED:
        SHARED["client"] = await Client.connect(URL)
    return SHARED["client"]


async def test_6_shared_client_first() -> None:
    client = await shared_client()
    async with worker(client):
        assert await client.execute_workflow(Doubler.run, 6, id="six", task_queue=Q) == 12
    await client.start_workflow(Doubler.run, 7, id="seven", task_queue=Q)  # No worker now.


async def test_7_shared_client_on_a_new_loop() -> None:
    client = await shared_client()
    async with worker(client):
        assert await client.get_workflow_handle("seven").result() == 14
