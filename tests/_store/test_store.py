"""Writes of ``Store`` that must hold exactly once or not at all, on both backends."""

from __future__ import annotations

import pytest

from dbosify import workflow
from dbosify._runtime._process import current_process
from dbosify.client import Client

Q = "store-q"


@workflow.defn
class Idle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@pytest.fixture
async def running(client: Client) -> str:
    """A running run (no worker serves its queue, so it stays RUNNING and untouched)."""
    handle = await client.start_workflow(Idle.run, id="idle", task_queue=Q)
    assert handle.result_run_id is not None
    return handle.result_run_id


async def test_send_to_workflow_delivers_a_key_once(client: Client, running: str) -> None:
    process = current_process()
    assert process is not None
    store = process.store
    # Sent again after a crash, with the same key: one event.
    for _ in range(2):
        assert store.send_to_workflow("default", "idle", "", "signal", b"s", "sender/1") == running
    assert store.send_to_workflow("default", "idle", running, "signal", b"s", "sender/2") == running
    assert [e.payload for e in store.read_inbox(running, 0)] == [b"s", b"s"]


async def test_send_to_workflow_needs_a_running_run(client: Client, running: str) -> None:
    process = current_process()
    assert process is not None
    store = process.store
    assert store.send_to_workflow("default", "nobody", "", "signal", b"s", "k1") is None
    assert store.send_to_workflow("default", "idle", "other-run", "signal", b"s", "k2") is None
    assert store.send_to_workflow("elsewhere", "idle", "", "signal", b"s", "k3") is None
    await client.get_workflow_handle("idle").terminate("done")
    assert store.send_to_workflow("default", "idle", "", "signal", b"s", "k4") is None
    assert not [e for e in store.read_inbox(running, 0) if e.kind == "signal"]
