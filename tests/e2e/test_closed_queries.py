"""A query of a closed run, from a process with no worker of its task queue, is answered by a
process that has one, through the database (issue 10), as for a running run."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from dbosify.client import Client

from ._app import Answers
from .conftest import Cluster

pytestmark = pytest.mark.slow


async def test_closed_run_is_queried_through_a_worker(client: Client, cluster: Cluster) -> None:
    worker = cluster.start("answers", "e2e-answers")
    await cluster.ready(worker)
    handle = await client.start_workflow(Answers.run, "hello", id="answers", task_queue="answers")
    assert await handle.result() == "hello"
    # This process has no worker at all: the worker process replays the run and answers.
    assert await handle.query(Answers.current) == "state=hello"
    cluster.kill(worker)
    with pytest.raises(RPCError) as info:
        await handle.query(Answers.current)
    assert info.value.status == RPCStatusCode.FAILED_PRECONDITION
    assert "worker" in info.value.message
