"""Signals and cancel requests one workflow sends another (``workflow.get_external_workflow_handle``).

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify import workflow
from dbosify.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from dbosify.exceptions import CancelledError
from dbosify.worker import Replayer, UnsandboxedWorkflowRunner, Worker

Q = "external-q"


@workflow.defn
class Receiver:
    """Collects ``add`` signals until ``end``; a cancel makes it report what it had."""

    def __init__(self) -> None:
        self.items: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: "end" in self.items)
        return self.items

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)


@workflow.defn
class Sender:
    """Signals ``target`` (or asks it to cancel); returns how that went."""

    @workflow.run
    async def run(self, target: str, action: str, items: list[str]) -> str:
        handle = workflow.get_external_workflow_handle(target)
        try:
            if action == "cancel":
                await handle.cancel()
            else:
                for item in items:
                    await handle.signal(Receiver.add, item)
        except Exception as err:  # The failure is what the test looks at.
            return f"{type(err).__name__}: {err}"
        return "sent"


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[Receiver, Sender])


def _event_types(history: Any) -> list[int]:
    return [e.event_type for e in history.events]


async def test_signal_reaches_another_workflow_once(client: Client) -> None:
    async with _worker(client):
        receiver = await client.start_workflow(Receiver.run, id="receiver", task_queue=Q)
        sender = await client.start_workflow(Sender.run, args=["receiver", "signal",
                                                               ["a", "b", "end"]],
                                             id="sender", task_queue=Q)
        assert await sender.result() == "sent"
        assert await receiver.result() == ["a", "b", "end"]
        history = await sender.fetch_history()
    types = _event_types(history)
    assert types.count(EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED) == 3
    assert types.count(EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED) == 3
    await Replayer(workflows=[Sender],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


async def test_signal_to_a_missing_workflow_fails_in_the_sender(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Sender.run, args=["nobody", "signal", ["x"]],
                                               id="lonely-sender", task_queue=Q)
    assert result.startswith("ApplicationError: ExternalWorkflowExecutionNotFound: Unable to "
                             "signal external workflow")
    assert "'nobody'" in result


async def test_cancel_request_reaches_another_workflow(client: Client) -> None:
    async with _worker(client):
        receiver = await client.start_workflow(Receiver.run, id="to-cancel", task_queue=Q)
        assert await client.execute_workflow(Sender.run, args=["to-cancel", "cancel", []],
                                             id="canceller", task_queue=Q) == "sent"
        with pytest.raises(WorkflowFailureError) as info:
            await receiver.result()
        assert isinstance(info.value.cause, CancelledError)
        assert (await receiver.describe()).status == WorkflowExecutionStatus.CANCELED
        history = await client.get_workflow_handle("canceller").fetch_history()
    assert EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED in \
        _event_types(history)


async def test_cancel_request_to_a_closed_workflow_fails(client: Client) -> None:
    async with _worker(client):
        receiver = await client.start_workflow(Receiver.run, id="closed", task_queue=Q)
        await receiver.signal(Receiver.add, "end")
        assert await receiver.result() == ["end"]
        result = await client.execute_workflow(Sender.run, args=["closed", "cancel", []],
                                               id="late-canceller", task_queue=Q)
    assert result.startswith("ApplicationError: ExternalWorkflowExecutionNotFound: Unable to "
                             "cancel external workflow")
