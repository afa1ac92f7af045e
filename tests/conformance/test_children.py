"""Child workflows (``workflow.start_child_workflow`` / ``execute_child_workflow``): results,
failures with Temporal's cause chain, signals and cancels through the handle, id conflicts,
parent close policies, children on another task queue, and the parent's history replayed by
temporalio's ``Replayer``.

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from dbosify import workflow
from dbosify._runtime._replay import replay_history
from dbosify.client import Client, WorkflowExecutionStatus
from dbosify.common import RetryPolicy, WorkflowIDReusePolicy
from dbosify.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from dbosify.worker import Replayer, UnsandboxedWorkflowRunner, Worker

Q = "children-q"
OTHER_Q = "children-other-q"


@workflow.defn
class Kid:
    """Greets, fails on request, or waits for ``finish`` signals (a cancel ends it too)."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    @workflow.run
    async def run(self, name: str, mode: str = "greet") -> str:
        if mode == "fail":
            raise ApplicationError(f"{name} cannot", "detail", type="KidError",
                                   non_retryable=True)
        if mode == "flaky":
            if workflow.info().attempt == 1:
                raise ApplicationError("first attempt fails")
            return f"attempt {workflow.info().attempt}|ok"
        if mode == "wait":
            await workflow.wait_condition(lambda: bool(self.finished))
            return f"{name} finished by {self.finished[0]}"
        if mode == "continue" and not workflow.info().continued_run_id:
            workflow.continue_as_new(args=[name + "+", "continue"])
        return f"hello {name} from {workflow.info().task_queue}"

    @workflow.signal
    def finish(self, who: str) -> None:
        self.finished.append(who)


@workflow.defn
class Parent:
    """Runs one child in the way ``how`` says; returns what it saw."""

    def __init__(self) -> None:
        self.forgotten: asyncio.Future[Any] | None = None

    @workflow.run
    async def run(self, how: str, child_id: str, mode: str = "greet",
                  queue: str = "") -> str:
        opts: dict[str, Any] = {"id": child_id}
        if queue:
            opts["task_queue"] = queue
        if how == "execute":
            result: str = await workflow.execute_child_workflow(Kid.run, args=["ann", mode],
                                                                 **opts)
            return result
        if how == "fail":
            try:
                await workflow.execute_child_workflow(Kid.run, args=["bob", "fail"], **opts)
            except ChildWorkflowError as err:
                cause = err.cause
                assert isinstance(cause, ApplicationError)
                return (f"{type(err).__name__}|{err.message}|{cause.type}|{cause.message}|"
                        f"{cause.details[0]}|{err.workflow_id}|{err.workflow_type}")
            return "no error"
        if how == "signal":
            handle = await workflow.start_child_workflow(Kid.run, args=["cy", "wait"], **opts)
            await handle.signal(Kid.finish, "parent")
            return f"{handle.first_execution_run_id != ''}|{await handle}"
        if how.startswith("cancel:"):
            ctype = workflow.ChildWorkflowCancellationType[how.split(":")[1]]
            # Abandoned when the parent closes, so the test sees what the cancel did.
            handle = await workflow.start_child_workflow(
                Kid.run, args=["dee", "wait"], cancellation_type=ctype,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON, **opts)
            await workflow.sleep(0.05)
            handle.cancel()
            try:
                await handle
            except ChildWorkflowError as err:
                return f"{type(err).__name__}|{type(err.cause).__name__}"
            return "not cancelled"
        if how == "conflict":
            first = await workflow.start_child_workflow(Kid.run, args=["eve", "wait"], **opts)
            try:
                await workflow.start_child_workflow(Kid.run, args=["eve2", "wait"], **opts)
            except WorkflowAlreadyStartedError as err:
                await first.signal(Kid.finish, "conflict")
                return f"already started: {err.workflow_id}|{await first}"
            return "started twice"
        if how == "timeout":
            try:
                await workflow.execute_child_workflow(Kid.run, args=["hal", "wait"],
                                                      execution_timeout=timedelta(seconds=0.5),
                                                      **opts)
            except ChildWorkflowError as err:
                return f"{type(err.cause).__name__}|{err.retry_state}"
            return "no timeout"
        if how == "outlive":
            # The child is terminated from outside; the parent then waits to be terminated.
            try:
                await workflow.execute_child_workflow(Kid.run, args=["ida", "wait"], **opts)
            except ChildWorkflowError as err:
                return f"{type(err.cause).__name__}"
            return "no error"
        if how.startswith("reuse:"):
            # The id of a closed child again, under the given reuse policy.
            policy = WorkflowIDReusePolicy[how.split(":")[1]]
            first: str = await workflow.execute_child_workflow(Kid.run, args=["jo"], **opts)
            try:
                second: str = await workflow.execute_child_workflow(
                    Kid.run, args=["jo2"], id_reuse_policy=policy, **opts)
            except WorkflowAlreadyStartedError:
                return f"{first}|already started"
            return f"{first}|{second}"
        if how == "cron":
            await workflow.start_child_workflow(
                Kid.run, args=["lu"], cron_schedule="0 0 * * *",
                parent_close_policy=workflow.ParentClosePolicy.ABANDON, **opts)
            return "scheduled"
        if how.startswith("fire-and-forget"):
            # The start is asked for in the task that completes the parent.
            policy = workflow.ParentClosePolicy[how.partition(":")[2] or "ABANDON"]
            self.forgotten = asyncio.ensure_future(workflow.start_child_workflow(
                Kid.run, args=["kay", "wait"], parent_close_policy=policy, **opts))
            return "forgotten"
        if how == "cancel-unsent":
            # The start and a signal to another workflow, each cancelled in the task that
            # asked for it: Core sends neither, and resolves both as cancelled at once.
            start = asyncio.ensure_future(workflow.start_child_workflow(
                Kid.run, args=["nia", "wait"], **opts))
            other = workflow.get_external_workflow_handle(child_id + "-other")
            send = asyncio.ensure_future(other.signal(Kid.finish, "never"))
            await asyncio.sleep(0)
            start.cancel()
            send.cancel()
            outcomes = []
            for task in (start, send):
                try:
                    await task
                    outcomes.append("done")
                except (asyncio.CancelledError, CancelledError, ChildWorkflowError) as err:
                    outcomes.append(f"{type(err).__name__}/{type(err.__cause__).__name__}")
            await workflow.sleep(0.01)  # A later task: the replay must go on past the cancels.
            return "|".join(outcomes)
        if how.startswith("hold:"):
            # A child with the given close policy, and a parent that never ends by itself.
            policy = workflow.ParentClosePolicy[how.split(":")[1]]
            await workflow.start_child_workflow(Kid.run, args=["gil", mode],
                                                parent_close_policy=policy, **opts)
            await workflow.wait_condition(lambda: False)
        if how.startswith("leave:"):
            policy = workflow.ParentClosePolicy[how.split(":")[1]]
            await workflow.start_child_workflow(Kid.run, args=["fay", "wait"],
                                                parent_close_policy=policy, **opts)
            return "left"
        raise ValueError(how)


@workflow.defn
class Tree:
    """A chain of children ``depth`` deep; each returns what it knows of its parent and root.
    The last continues as new once, which keeps both."""

    @workflow.run
    async def run(self, depth: int) -> list[list[str | None]]:
        info = workflow.info()
        me = [info.workflow_id, info.root.workflow_id if info.root else None,
              info.root.run_id if info.root else None,
              info.parent.workflow_id if info.parent else None]
        if depth == 0:
            if not info.continued_run_id:
                workflow.continue_as_new(0)
            return [me]
        below: list[list[str | None]] = await workflow.execute_child_workflow(
            Tree.run, depth - 1, id=f"{info.workflow_id}-c")
        return [me, *below]


@workflow.defn
class RetryParent:
    """A child that fails its first attempt, retried by its policy: the parent hears of the
    chain's last run only."""

    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_child_workflow(
            Kid.run, args=["gus", "flaky"], id="kid-r",
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(
                milliseconds=10)))
        return result


def _worker(client: Client, queue: str = Q, **kwargs: Any) -> Worker:
    return Worker(client, task_queue=queue, workflows=[Parent, Kid, Tree], **kwargs)


def _types(history: Any) -> list[int]:
    return [e.event_type for e in history.events]


async def _replay(history: Any) -> None:
    await Replayer(workflows=[Parent, Kid, Tree],
                   workflow_runner=UnsandboxedWorkflowRunner()).replay_workflow(history)


async def test_execute_child_returns_its_result_in_both_histories(client: Client) -> None:
    async with _worker(client):
        parent = await client.start_workflow(Parent.run, args=["execute", "kid-1"],
                                             id="parent-1", task_queue=Q)
        assert await parent.result() == f"hello ann from {Q}"
        history = await parent.fetch_history()
        kid = client.get_workflow_handle("kid-1")
        kid_history = await kid.fetch_history()
        description = await kid.describe()
    types = _types(history)
    E = EventType
    assert types.count(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) == 1
    assert types.count(E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED) == 1
    assert types.count(E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED) == 1
    started = kid_history.events[0].workflow_execution_started_event_attributes
    assert started.parent_workflow_execution.workflow_id == "parent-1"
    assert started.parent_workflow_execution.run_id == parent.result_run_id
    assert description.parent_id == "parent-1"
    await _replay(history)
    await _replay(kid_history)


async def test_child_failure_has_temporals_cause_chain(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=["fail", "kid-f"],
                                               id="parent-f", task_queue=Q)
        history = await client.get_workflow_handle("parent-f").fetch_history()
    assert result == ("ChildWorkflowError|Child Workflow execution failed|KidError|bob cannot|"
                      "detail|kid-f|Kid")
    assert EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED in _types(history)
    await _replay(history)


async def test_signal_a_child_through_its_handle(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=["signal", "kid-s"],
                                               id="parent-s", task_queue=Q)
        history = await client.get_workflow_handle("parent-s").fetch_history()
    assert result == "True|cy finished by parent"
    await _replay(history)


@pytest.mark.parametrize("ctype", ["TRY_CANCEL", "WAIT_CANCELLATION_COMPLETED",
                                   "WAIT_CANCELLATION_REQUESTED", "ABANDON"])
async def test_cancel_a_child(client: Client, ctype: str) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=[f"cancel:{ctype}", "kid-c"],
                                               id="parent-c", task_queue=Q)
        assert result == "ChildWorkflowError|CancelledError"
        kid = client.get_workflow_handle("kid-c")
        if ctype == "ABANDON":
            # Abandoned: the child goes on, untouched.
            assert (await kid.describe()).status == WorkflowExecutionStatus.RUNNING
            await kid.signal(Kid.finish, "test")
            assert await kid.result() == "dee finished by test"
        else:
            with pytest.raises(Exception) as info:
                await kid.result()
            assert isinstance(info.value.__cause__, CancelledError)
            assert (await kid.describe()).status == WorkflowExecutionStatus.CANCELED
        history = await client.get_workflow_handle("parent-c").fetch_history()
    if ctype != "ABANDON":
        assert EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED in \
            _types(history)
    if ctype.startswith("WAIT_"):
        # Core resolves both waiting types with the child's close.
        assert EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED in _types(history)
    await _replay(history)


async def test_a_child_id_already_running_fails_the_second_start(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=["conflict", "kid-x"],
                                               id="parent-x", task_queue=Q)
        history = await client.get_workflow_handle("parent-x").fetch_history()
    assert result == "already started: kid-x|eve finished by conflict"
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED in _types(history)
    await _replay(history)


@pytest.mark.parametrize("policy,status", [
    ("TERMINATE", WorkflowExecutionStatus.TERMINATED),
    ("REQUEST_CANCEL", WorkflowExecutionStatus.CANCELED),
    ("ABANDON", WorkflowExecutionStatus.RUNNING),
])
async def test_parent_close_policies(client: Client, policy: str,
                                     status: WorkflowExecutionStatus) -> None:
    async with _worker(client):
        assert await client.execute_workflow(Parent.run, args=[f"leave:{policy}", "kid-p"],
                                             id="parent-p", task_queue=Q) == "left"
        kid = client.get_workflow_handle("kid-p")
        for _ in range(100):
            if (await kid.describe()).status == status:
                break
            await asyncio.sleep(0.05)
        assert (await kid.describe()).status == status
        if policy == "TERMINATE":
            with pytest.raises(Exception) as info:
                await kid.result()
            assert isinstance(info.value.__cause__, TerminatedError)
        if policy == "ABANDON":
            await kid.signal(Kid.finish, "someone")
            assert await kid.result() == "fay finished by someone"


async def test_a_child_on_another_task_queue(client: Client) -> None:
    async with _worker(client), Worker(client, task_queue=OTHER_Q, workflows=[Kid]):
        result = await client.execute_workflow(
            Parent.run, args=["execute", "kid-q", "greet", OTHER_Q], id="parent-q",
            task_queue=Q)
    assert result == f"hello ann from {OTHER_Q}"


async def test_a_child_that_continues_as_new_is_followed(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=["execute", "kid-n", "continue"],
                                               id="parent-n", task_queue=Q)
        history = await client.get_workflow_handle("parent-n").fetch_history()
    assert result == f"hello ann+ from {Q}"
    await _replay(history)


async def test_a_retried_child_is_followed_to_its_last_attempt(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[RetryParent, Kid]):
        assert await client.execute_workflow(RetryParent.run, id="parent-r",
                                             task_queue=Q) == "attempt 2|ok"


async def test_a_child_that_times_out(client: Client) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=["timeout", "kid-t"],
                                               id="parent-t", task_queue=Q)
        history = await client.get_workflow_handle("parent-t").fetch_history()
    assert result == f"TimeoutError|{RetryState.TIMEOUT}"
    assert EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT in _types(history)
    await _replay(history)


async def test_a_child_terminated_from_outside(client: Client) -> None:
    async with _worker(client):
        parent = await client.start_workflow(Parent.run, args=["outlive", "kid-z"],
                                             id="parent-z", task_queue=Q)
        kid = client.get_workflow_handle("kid-z")
        for _ in range(100):
            try:
                if (await kid.describe()).status == WorkflowExecutionStatus.RUNNING:
                    break
            except Exception:  # Not started yet.
                pass
            await asyncio.sleep(0.05)
        await kid.terminate("from outside")
        assert await parent.result() == "TerminatedError"
        history = await parent.fetch_history()
    assert EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED in _types(history)
    await _replay(history)


async def _until_running(handle: Any) -> None:
    for _ in range(200):
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                return
        except Exception:  # Not started yet.
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not start")


async def test_terminating_the_parent_applies_its_close_policy(client: Client) -> None:
    async with _worker(client):
        parent = await client.start_workflow(Parent.run, args=["outlive", "kid-y"],
                                             id="parent-y", task_queue=Q)
        kid = client.get_workflow_handle("kid-y")
        await _until_running(kid)
        pending = (await parent.describe()).raw_description.pending_children
        assert [(c.workflow_id, c.workflow_type_name) for c in pending] == [("kid-y", "Kid")]
        await parent.terminate("parent goes")
        with pytest.raises(Exception) as info:
            await kid.result()
        assert isinstance(info.value.__cause__, TerminatedError)
        assert (await kid.describe()).status == WorkflowExecutionStatus.TERMINATED


@pytest.mark.parametrize("policy", ["TERMINATE", "REQUEST_CANCEL"])
async def test_a_parent_terminated_with_no_worker_still_closes_its_children(
        client: Client, policy: str) -> None:
    # The policy is applied by the termination itself, as Temporal's server does: the parent's
    # own worker is gone, only the child's task queue is served.
    async with _worker(client, OTHER_Q):
        async with _worker(client):
            parent = await client.start_workflow(
                Parent.run, args=[f"hold:{policy}", "kid-h", "wait", OTHER_Q], id="parent-h",
                task_queue=Q)
            kid = client.get_workflow_handle("kid-h")
            await _until_running(kid)
        await parent.terminate("parent goes")
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(kid.result(), 30)
    expected = TerminatedError if policy == "TERMINATE" else CancelledError
    assert isinstance(info.value.__cause__, expected), info.value


@pytest.mark.parametrize("policy,second", [("ALLOW_DUPLICATE", f"hello jo2 from {Q}"),
                                           ("REJECT_DUPLICATE", "already started")])
async def test_child_id_reuse_policy(client: Client, policy: str, second: str) -> None:
    async with _worker(client):
        result = await client.execute_workflow(Parent.run, args=[f"reuse:{policy}", "kid-u"],
                                               id="parent-u", task_queue=Q)
        history = await client.get_workflow_handle("parent-u").fetch_history()
    assert result == f"hello jo from {Q}|{second}"
    await _replay(history)


async def test_a_child_started_by_the_closing_task_is_started(client: Client) -> None:
    async with _worker(client):
        assert await client.execute_workflow(Parent.run, args=["fire-and-forget", "kid-k"],
                                             id="parent-k", task_queue=Q) == "forgotten"
        kid = client.get_workflow_handle("kid-k")
        for _ in range(100):
            try:
                await kid.signal(Kid.finish, "test")
                break
            except Exception:  # Not started yet.
                await asyncio.sleep(0.05)
        assert await kid.result() == "kay finished by test"
        assert (await kid.describe()).parent_id == "parent-k"


@pytest.mark.parametrize("policy", ["TERMINATE", "REQUEST_CANCEL"])
async def test_a_child_the_closing_task_asks_for_meets_its_close_policy(
        client: Client, policy: str) -> None:
    # Temporal starts it, then applies the policy at once: it exists, terminated or cancelled.
    async with _worker(client):
        await client.execute_workflow(Parent.run, args=[f"fire-and-forget:{policy}", "kid-f"],
                                      id="parent-f", task_queue=Q)
        kid = client.get_workflow_handle("kid-f")
        with pytest.raises(Exception) as info:
            await asyncio.wait_for(kid.result(), 30)
        expected = TerminatedError if policy == "TERMINATE" else CancelledError
        assert isinstance(info.value.__cause__, expected), info.value
        assert (await kid.describe()).parent_id == "parent-f"


async def test_cancelling_the_parent_cancels_its_child(client: Client) -> None:
    async with _worker(client):
        parent = await client.start_workflow(Parent.run, args=["outlive", "kid-v"],
                                             id="parent-v", task_queue=Q)
        kid = client.get_workflow_handle("kid-v")
        for _ in range(100):
            try:
                if (await kid.describe()).status == WorkflowExecutionStatus.RUNNING:
                    break
            except Exception:  # Not started yet.
                pass
            await asyncio.sleep(0.05)
        await parent.cancel()
        # The parent's code catches the child's error (a ChildWorkflowError caused by the
        # child's cancellation) and returns what it was.
        assert await parent.result() == "CancelledError"
        assert (await kid.describe()).status == WorkflowExecutionStatus.CANCELED
        history = await parent.fetch_history()
    await _replay(history)


async def test_children_know_their_root(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Tree.run, 2, id="tree", task_queue=Q)
        root = handle.result_run_id
        assert await handle.result() == [["tree", None, None, None],
                                         ["tree-c", "tree", root, "tree"],
                                         ["tree-c-c", "tree", root, "tree-c"]]
        continued = await client.get_workflow_handle("tree-c-c").fetch_history()
        first_run = continued.events[0].workflow_execution_started_event_attributes \
            .continued_execution_run_id
        history = await client.get_workflow_handle("tree-c-c", run_id=first_run).fetch_history()
    for events in (history.events, continued.events):
        started = events[0].workflow_execution_started_event_attributes
        assert (started.root_workflow_execution.workflow_id,
                started.root_workflow_execution.run_id) == ("tree", root)
    await _replay(history)


async def test_a_child_start_cancelled_before_it_was_sent(client: Client) -> None:
    async with _worker(client):
        handle = await client.start_workflow(Parent.run, args=["cancel-unsent", "kid-u"],
                                             id="parent-u", task_queue=Q)
        assert await handle.result() == "ChildWorkflowError/CancelledError|CancelledError/NoneType"
        history = await handle.fetch_history()
    types = _types(history)
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in types
    assert EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED not in types
    with pytest.raises(Exception, match="not found"):
        await client.get_workflow_handle("kid-u").describe()
    await _replay(history)
    report = await replay_history(history.events, Parent, workflow_id="parent-u")
    assert not report.diverged, report.divergence


async def test_a_cron_child_waits_for_its_first_cron_time(client: Client) -> None:
    async with _worker(client):
        assert await client.execute_workflow(Parent.run, args=["cron", "kid-cron"],
                                             id="parent-cron", task_queue=Q) == "scheduled"
        kid = await client.get_workflow_handle("kid-cron").describe()
        assert kid.status == WorkflowExecutionStatus.RUNNING
        assert kid.execution_time is not None and kid.execution_time > kid.start_time
        await client.get_workflow_handle("kid-cron").terminate("done looking")
