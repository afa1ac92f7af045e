"""A TRY_CANCEL activity whose attempt completes around the workflow's cancel request resolves
as cancelled, as Temporal Core does: Core resolves such an activity at once when the workflow
requests the cancel, and ignores a completion that arrives later.

The race is made deterministic: the workflow's signal handler requests the cancel, lets the
attempt (a sync activity that ignores cancellation) return, and waits until the attempt's outcome
has reached the engine before the activation that carries the cancel request ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.exceptions import ActivityError, CancelledError
from dbosify.worker import Worker
from dbosify.workflow import ActivityCancellationType

Q = "cancel-race-q"
# Per workflow id: set when the attempt has started / the workflow has requested the cancel /
# the attempt has returned.
STARTED: dict[str, threading.Event] = {}
CANCEL_ASKED: dict[str, threading.Event] = {}
RETURNED: dict[str, threading.Event] = {}


@activity.defn
def returns_once_cancel_is_asked() -> str:
    wid = activity.info().workflow_id
    STARTED[wid].set()
    CANCEL_ASKED[wid].wait(10)
    RETURNED[wid].set()
    return "completed"


@workflow.defn
class CancelsWhileItCompletes:
    def __init__(self) -> None:
        self.handle: workflow.ActivityHandle[str] | None = None

    @workflow.run
    async def run(self, cancellation_type: str) -> str:
        self.handle = workflow.start_activity(
            returns_once_cancel_is_asked, start_to_close_timeout=timedelta(seconds=30),
            cancellation_type=ActivityCancellationType[cancellation_type])
        try:
            return await self.handle
        except ActivityError as err:
            return f"{type(err.cause).__name__}"

    @workflow.signal
    def cancel_it(self) -> None:
        assert self.handle is not None
        self.handle.cancel()
        wid = workflow.info().workflow_id
        CANCEL_ASKED[wid].set()
        # Blocking the activation (never the engine's loop) while the attempt returns and its
        # outcome is handed to the run, so the outcome is there before the cancel request is.
        RETURNED[wid].wait(10)
        time.sleep(0.3)


async def _race(client: Client, cancellation_type: str) -> tuple[str, list[str]]:
    wid = f"cancel-race-{uuid.uuid4()}"
    STARTED[wid] = threading.Event()
    CANCEL_ASKED[wid] = threading.Event()
    RETURNED[wid] = threading.Event()
    async with Worker(client, task_queue=Q, workflows=[CancelsWhileItCompletes],
                      activities=[returns_once_cancel_is_asked]):
        handle = await client.start_workflow(CancelsWhileItCompletes.run, cancellation_type,
                                             id=wid, task_queue=Q)
        assert await asyncio.to_thread(STARTED[wid].wait, 10), "the attempt never started"
        await handle.signal(CancelsWhileItCompletes.cancel_it)
        result: str = await handle.result()
    assert RETURNED[wid].is_set()
    history = await handle.fetch_history()
    kinds = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events]
    assert kinds[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    # Core never tells the server of an ABANDON cancel.
    assert ("ACTIVITY_TASK_CANCEL_REQUESTED" in kinds) == (cancellation_type != "ABANDON")
    return result, kinds


async def test_try_cancel_ignores_a_completion_after_the_cancel_request(client: Client) -> None:
    result, kinds = await _race(client, "TRY_CANCEL")
    assert result == CancelledError.__name__
    assert "ACTIVITY_TASK_COMPLETED" not in kinds


async def test_abandon_ignores_a_completion_after_the_cancel_request(client: Client) -> None:
    result, kinds = await _race(client, "ABANDON")
    assert result == CancelledError.__name__
    assert "ACTIVITY_TASK_COMPLETED" not in kinds


async def test_wait_cancellation_completed_takes_the_completion(client: Client) -> None:
    # Temporal waits for the attempt's own outcome here: it completed, so the workflow has it.
    result, kinds = await _race(client, "WAIT_CANCELLATION_COMPLETED")
    assert result == "completed"
    assert kinds.index("ACTIVITY_TASK_CANCEL_REQUESTED") < kinds.index("ACTIVITY_TASK_COMPLETED")
