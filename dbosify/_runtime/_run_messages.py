"""The message side of a run: its inbox (signals, cancel requests, terminations, activity
results from other processes, children's closes), the signals and cancel requests it sends other
workflows, the updates it read and has not admitted yet (the run validates them live and records
them only once accepted), and how far queries may see (they are answered on the live instance,
never recorded).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
)
from temporalio.bridge.proto.common import NamespacedWorkflowExecution
from temporalio.bridge.proto.workflow_activation import (
    ResolveRequestCancelExternalWorkflow,
    ResolveSignalExternalWorkflow,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import WorkflowCommand

from dbosify._runtime import _run_state as rs
from dbosify._runtime._child_close import CHILD_CLOSED
from dbosify._store._inbox import InboxEvent

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._runtime._run_activities import ActivitiesPart
    from dbosify._runtime._run_children import ChildrenPart
    from dbosify._runtime._run_context import RunContext


def signal_cancelled_job(seq: int) -> WorkflowActivationJob:
    """Core's resolution of a signal to another workflow cancelled before it was sent."""
    job = WorkflowActivationJob()
    job.resolve_signal_external_workflow.seq = seq
    failure = job.resolve_signal_external_workflow.failure
    failure.message = "Signal was cancelled before being sent"
    failure.canceled_failure_info.SetInParent()
    return job


class MessagesPart:
    """The inbox of a run (:class:`~dbosify._runtime._driver.RunDriver`), the messages it sends
    other workflows, the updates it read and has not admitted yet, and how far queries may see.
    The inbox also carries activity results from other processes and children's closes: they
    go to those parts."""

    def __init__(self, run: RunContext, activities: ActivitiesPart,
                 children: ChildrenPart) -> None:
        self.run = run
        self.process: Process = run.process
        self.run_id = run.run_id
        self.wake = run.wake
        self.activities = activities
        self.children = children
        # A run created by this process has an empty inbox unless someone wrote to it since
        # (the process remembers those wake-ups); any other run reads its inbox first.
        self.inbox_dirty = run.recovering or not run.process.inbox_known_empty(run.run_id)
        self.inbox_read_at = 0.0
        self.inbox_cursor = 0
        # Inbox events up to this id have been applied to the instance (queries wait for it).
        self.applied_cursor = 0
        self.progress = asyncio.Event()
        self.pending_updates: list[WorkflowActivationJob] = []
        self.update_inbox_ids: dict[str, int] = {}  # Update id -> its inbox event's id.
        # Signals and cancel requests this run sends to other workflows, by (command kind, seq),
        # until their resolution is recorded; the ones being sent.
        self.external: dict[tuple[str, int], WorkflowCommand] = {}
        self.external_sending: set[tuple[str, int]] = set()

    # The inbox --------------------------------------------------------------------------------

    async def read_inbox(self) -> dict[str, Any] | None:
        """Read the inbox past the cursor, handing each event to whom it is for; returns what
        ends the run (a termination) when one came, else None."""
        self.inbox_dirty = False
        self.inbox_read_at = asyncio.get_running_loop().time()
        events = await self.process.db_call(self.process.store.read_inbox, self.run_id,
                                         self.inbox_cursor)
        for event in events:
            self.inbox_cursor = max(self.inbox_cursor, event.id)
            stop = self._on_inbox(event)
            if stop is not None:
                return stop
        return None

    def _on_inbox(self, event: InboxEvent) -> dict[str, Any] | None:
        if event.kind == "terminate":
            return {"terminated": True}
        if event.kind == CHILD_CLOSED:
            self.children.on_child_closed(event)
            return None
        if event.kind == "activity_result":
            token, outcome = rs.decode_remote_outcome(event.payload)
            parts = token.decode().split("/")
            if len(parts) == 3 and parts[0] == self.run_id:
                self.activities.add_outcome(int(parts[1]), int(parts[2]), outcome)
            return None
        job = rs.job_from_inbox(event)
        if job is not None and job.HasField("signal_workflow"):
            # Core gives the id of the signal's history event; ours is close to it (the
            # history builder numbers events exactly), and must not be 0.
            job.signal_workflow.originating_event_id = self.run.history_length + 1
        if job is not None and job.HasField("do_update"):
            self.update_inbox_ids.setdefault(job.do_update.id, event.id)
        if job is not None:
            (self.pending_updates if job.HasField("do_update") else self.run.pending_jobs
             ).append(job)
        return None

    def cursor_to_record(self) -> int:
        """The inbox cursor an event step records: inbox events up to it are in the step's
        records (or were not history), so a recovered run reads the inbox after it and no
        signal is delivered twice. Updates read but not admitted yet are not recorded: it stops
        below the first of them."""
        floor = min((self.update_inbox_ids.get(j.do_update.id, self.inbox_cursor + 1)
                     for j in self.pending_updates), default=self.inbox_cursor + 1)
        return min(self.inbox_cursor, floor - 1)

    # Signals and cancel requests to other workflows --------------------------------------------

    def send_later(self, kind: str, command: WorkflowCommand) -> None:
        """A recorded signal or cancel request to another workflow (``kind``: the command's):
        :meth:`send_external_commands` sends it once the run is live."""
        self.external[(kind, getattr(command, kind).seq)] = command

    def cancel_signal(self, seq: int) -> None:
        """The code cancelled its signal ``seq`` to another workflow. As in Core, only a signal
        not sent yet can be cancelled: it is never sent, and resolves as cancelled at once (no
        history event stands for either). Once sending has begun the cancel is a no-op."""
        key = ("signal_external_workflow_execution", seq)
        if key not in self.external or key in self.external_sending:
            return
        del self.external[key]
        self.run.deliver(signal_cancelled_job(seq))

    def forget_external(self, kind: str, seq: int) -> None:
        """A recorded activation resolved the ``kind`` command ``seq``: it is not sent again."""
        self.external.pop((kind, seq), None)

    def send_external_commands(self) -> None:
        """Send what the run's code asked for and nobody has sent yet (live only: on replay the
        resolution comes from the records)."""
        for key, command in self.external.items():
            if key not in self.external_sending:
                self.external_sending.add(key)
                self.process.spawn(self._send_external(key, command))

    async def _send_external(self, key: tuple[str, int], command: WorkflowCommand) -> None:
        kind, seq = key
        job = WorkflowActivationJob()
        resolution: ResolveSignalExternalWorkflow | ResolveRequestCancelExternalWorkflow
        target = getattr(command, kind).workflow_execution
        if kind == "signal_external_workflow_execution" and \
                command.signal_external_workflow_execution.WhichOneof("target") == \
                "child_workflow_id":
            # A child's handle signals the child's current run.
            target = NamespacedWorkflowExecution(
                workflow_id=command.signal_external_workflow_execution.child_workflow_id)
        namespace = target.namespace or self.run.row.namespace
        if kind == "signal_external_workflow_execution":
            body = command.signal_external_workflow_execution
            request = SignalWorkflowExecutionRequest(
                namespace=namespace, signal_name=body.signal_name,
                identity=self.process.identity)
            request.input.payloads.extend(body.args)
            for name, value in body.headers.items():
                request.header.fields[name].CopyFrom(value)
            inbox_kind, payload = "signal", request.SerializeToString()
            resolution = job.resolve_signal_external_workflow
        else:
            cancel = RequestCancelWorkflowExecutionRequest(
                namespace=namespace,
                reason=command.request_cancel_external_workflow_execution.reason,
                identity=self.process.identity)
            inbox_kind, payload = "cancel", cancel.SerializeToString()
            resolution = job.resolve_request_cancel_external_workflow
        resolution.seq = seq
        # Keyed by this run and seq: sent again after a crash, it is still delivered once.
        sent_to = await self.process.db_call(
            self.process.store.send_to_workflow, namespace,
            target.workflow_id, target.run_id, inbox_kind, payload,
            f"{self.run_id}/{kind}/{seq}")
        if sent_to is None:
            what = "signal" if inbox_kind == "signal" else "cancel"
            failure = resolution.failure
            failure.message = (f"Unable to {what} external workflow because it was not found "
                               f"(workflow id {target.workflow_id!r})")
            failure.application_failure_info.type = "ExternalWorkflowExecutionNotFound"
            failure.application_failure_info.non_retryable = True
        else:
            self.process.wake_run(sent_to)
        self.external.pop(key, None)
        self.run.deliver(job)

    # Queries ----------------------------------------------------------------------------------

    async def catch_up(self, limit_s: float = 10.0) -> None:
        """Apply the run's inbox events written so far, as Temporal's queries are consistent:
        a query sees every signal (and cancel request) accepted before it."""
        events = await self.process.db_call(self.process.store.read_inbox, self.run_id,
                                             self.applied_cursor)
        if not events:
            return
        target = max(e.id for e in events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while self.applied_cursor < target and not self.run.closed and \
                self.run.task_failure is None:
            left = deadline - loop.time()
            if left <= 0:
                return  # Answer from the state reached so far rather than hang the caller.
            self.progress.clear()
            self.inbox_dirty = True
            self.wake.set()
            try:
                await asyncio.wait_for(self.progress.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                continue

