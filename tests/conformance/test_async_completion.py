"""Activities completed from outside, and eager starts (issue 9 §5).

An activity calls ``activity.raise_complete_async()``; a client then heartbeats, completes,
fails or reports the cancellation of it through ``get_async_activity_handle`` (by task token or
by ids), from this process or another one. Each test runs on SQLite and on Postgres.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode

from dbosify import activity, workflow
from dbosify.client import AsyncActivityCancelledError, Client, WorkflowFailureError
from dbosify.common import RetryPolicy
from dbosify.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)
from dbosify.worker import Worker

Q = "async-completion-q"
REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENS: dict[str, list[bytes]] = {}
"""Task tokens each workflow's activity handed out, by workflow id (one per attempt)."""


@activity.defn
async def ask_human(question: str) -> str:
    info = activity.info()
    TOKENS.setdefault(info.workflow_id, []).append(info.task_token)
    activity.raise_complete_async()


@workflow.defn
class AskHuman:
    @workflow.run
    async def run(self, question: str) -> str:
        answer = await workflow.execute_activity(
            ask_human, question, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50)))
        return f"{question} -> {answer}"


@workflow.defn
class AskThenCancel:
    def __init__(self) -> None:
        self.cancel = False

    @workflow.run
    async def run(self, question: str) -> str:
        handle = workflow.start_activity(
            ask_human, question, start_to_close_timeout=timedelta(minutes=5),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        await workflow.wait_condition(lambda: self.cancel)
        handle.cancel()
        try:
            return await handle
        except ActivityError as err:
            return f"activity ended: {type(err.cause).__name__}"

    @workflow.signal
    def stop(self) -> None:
        self.cancel = True


def _wid() -> str:
    return f"ask-{uuid.uuid4().hex[:8]}"


async def _token(wid: str, count: int = 1) -> bytes:
    for _ in range(1000):
        tokens = TOKENS.get(wid, [])
        if len(tokens) >= count:
            return tokens[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"activity of {wid} never ran {count} time(s)")


def _worker(client: Client) -> Worker:
    return Worker(client, task_queue=Q, workflows=[AskHuman, AskThenCancel],
                  activities=[ask_human])


async def test_complete_by_task_token(client: Client) -> None:
    wid = _wid()
    async with _worker(client):
        handle = await client.start_workflow(AskHuman.run, "ship it?", id=wid, task_queue=Q)
        outside = client.get_async_activity_handle(task_token=await _token(wid))
        await outside.heartbeat("thinking")
        await outside.complete("yes")
        assert await handle.result() == "ship it? -> yes"
        with pytest.raises(RPCError) as err:
            await outside.complete("again")
        assert err.value.status == RPCStatusCode.NOT_FOUND
        # The history shows the activity completed with the outside result.
        history = await handle.fetch_history()
        kinds = [e.WhichOneof("attributes") for e in history.events]
        assert "activity_task_completed_event_attributes" in kinds


async def test_complete_by_ids(client: Client) -> None:
    wid = _wid()
    async with _worker(client):
        handle = await client.start_workflow(AskHuman.run, "lunch?", id=wid, task_queue=Q)
        await _token(wid)
        outside = client.get_async_activity_handle(workflow_id=wid, run_id=handle.result_run_id,
                                                   activity_id="1")
        await outside.heartbeat()
        await outside.complete("soup")
        assert await handle.result() == "lunch? -> soup"


async def test_fail_retries_then_fails_for_good(client: Client) -> None:
    wid = _wid()
    async with _worker(client):
        handle = await client.start_workflow(AskHuman.run, "deploy?", id=wid, task_queue=Q)
        # A retryable failure: the policy runs the activity again (a new attempt, new token).
        first = await _token(wid, 1)
        await client.get_async_activity_handle(task_token=first).fail(
            ApplicationError("try again later"))
        second = await _token(wid, 2)
        assert second != first
        await client.get_async_activity_handle(task_token=second).fail(
            ApplicationError("no, never", non_retryable=True))
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
        assert isinstance(err.value.cause, ActivityError)
        assert isinstance(err.value.cause.cause, ApplicationError)
        assert err.value.cause.cause.message == "no, never"


async def test_cancel_reaches_the_outside_and_is_reported(client: Client) -> None:
    wid = _wid()
    async with _worker(client):
        handle = await client.start_workflow(AskThenCancel.run, "wait?", id=wid, task_queue=Q)
        outside = client.get_async_activity_handle(task_token=await _token(wid))
        await outside.heartbeat()
        await handle.signal(AskThenCancel.stop)
        for _ in range(500):
            try:
                await outside.heartbeat()
            except AsyncActivityCancelledError:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the heartbeat never said the activity was cancelled")
        await outside.report_cancellation("gave up")
        assert await handle.result() == f"activity ended: {CancelledError.__name__}"


@pytest.mark.slow
async def test_completed_from_another_process(client: Client, database: str) -> None:
    wid = _wid()
    async with _worker(client):
        handle = await client.start_workflow(AskHuman.run, "remote?", id=wid, task_queue=Q)
        token = await _token(wid)
        code = (
            "import asyncio, sys\n"
            "from dbosify.client import Client\n"
            "async def main():\n"
            "    client = await Client.connect(sys.argv[1])\n"
            "    outside = client.get_async_activity_handle(task_token=sys.argv[2].encode())\n"
            "    await outside.heartbeat('from afar')\n"
            "    await outside.complete('done elsewhere')\n"
            "asyncio.run(main())\n")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          env.get("PYTHONPATH")]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, database, token.decode(), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert await asyncio.wait_for(handle.result(), 30) == "remote? -> done elsewhere"


async def test_bad_token_is_refused_clearly(client: Client) -> None:
    with pytest.raises(RPCError, match="not a dbosify activity task token"):
        await client.get_async_activity_handle(task_token=b"garbage").complete("x")


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, value: str) -> str:
        return value


async def test_eager_start_when_this_process_serves_the_queue(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        handle = await client.start_workflow(Echo.run, "now", id=_wid(), task_queue=Q,
                                             request_eager_start=True)
        assert getattr(handle, "__temporal_eagerly_started") is True
        assert await handle.result() == "now"
        plain = await client.start_workflow(Echo.run, "plain", id=_wid(), task_queue=Q)
        assert getattr(plain, "__temporal_eagerly_started") is False
    # No worker of the queue here: started, but not eagerly.
    later = await client.start_workflow(Echo.run, "later", id=_wid(), task_queue=Q,
                                        request_eager_start=True)
    assert getattr(later, "__temporal_eagerly_started") is False
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        assert await later.result() == "later"


@workflow.defn
class AskBriefly:
    @workflow.run
    async def run(self, question: str) -> str:
        return await workflow.execute_activity(
            ask_human, question, start_to_close_timeout=timedelta(milliseconds=600),
            retry_policy=RetryPolicy(maximum_attempts=2,
                                     initial_interval=timedelta(milliseconds=50)))


async def test_start_to_close_timeout_of_an_outside_attempt(client: Client) -> None:
    """Nobody completes it: each attempt times out after its start-to-close timeout (enforced
    as Temporal's server does), the policy retries once, then the workflow sees the timeout."""
    wid = _wid()
    async with Worker(client, task_queue=Q, workflows=[AskBriefly], activities=[ask_human]):
        handle = await client.start_workflow(AskBriefly.run, "anyone?", id=wid, task_queue=Q)
        first = await _token(wid, 1)
        await _token(wid, 2)  # The first attempt timed out and was retried.
        with pytest.raises(RPCError) as gone:
            await client.get_async_activity_handle(task_token=first).complete("late")
        assert gone.value.status == RPCStatusCode.NOT_FOUND
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 30)
        cause = err.value.cause
        assert isinstance(cause, ActivityError)
        assert isinstance(cause.cause, TimeoutError)
        assert cause.cause.type == TimeoutType.START_TO_CLOSE


@workflow.defn
class AskWithHeartbeat:
    @workflow.run
    async def run(self, question: str) -> str:
        return await workflow.execute_activity(
            ask_human, question, start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(milliseconds=800),
            retry_policy=RetryPolicy(maximum_attempts=1))


async def test_heartbeat_timeout_of_an_outside_attempt(client: Client) -> None:
    """Outside heartbeats keep the attempt alive past its heartbeat timeout; when they stop,
    the attempt times out (HEARTBEAT), as on Temporal."""
    wid = _wid()
    async with Worker(client, task_queue=Q, workflows=[AskWithHeartbeat],
                      activities=[ask_human]):
        handle = await client.start_workflow(AskWithHeartbeat.run, "still there?", id=wid,
                                             task_queue=Q)
        outside = client.get_async_activity_handle(task_token=await _token(wid))
        loop = asyncio.get_running_loop()
        began = loop.time()
        while loop.time() - began < 2.4:  # Three heartbeat timeouts, kept alive.
            await outside.heartbeat("here")
            await asyncio.sleep(0.2)
        with pytest.raises(WorkflowFailureError) as err:
            await asyncio.wait_for(handle.result(), 30)
        assert loop.time() - began >= 2.4
        cause = err.value.cause
        assert isinstance(cause, ActivityError)
        assert isinstance(cause.cause, TimeoutError)
        assert cause.cause.type == TimeoutType.HEARTBEAT
        assert list(cause.cause.last_heartbeat_details) == ["here"]
