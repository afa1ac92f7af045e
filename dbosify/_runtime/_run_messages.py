"""The message side of a run: its inbox (signals, cancel requests, terminations, activity
results from other processes), the signals and cancel requests it sends other workflows, updates
(validated live, recorded only once accepted) and queries (answered on the live instance, never
recorded).
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
    WorkflowActivation,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance

from dbosify._records import WorkflowTask
from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import AttemptOutcome
from dbosify._runtime._child_close import CHILD_CLOSED
from dbosify._runtime._commands import commands_of
from dbosify._runtime._held_output import HeldOutput
from dbosify._runtime._instance import activate
from dbosify._store._store import InboxEvent, now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process


class RunMessages:
    """Inbox, messages to other workflows, updates and queries of a
    :class:`~dbosify._runtime._driver.RunDriver` (a mixin: the driver owns the state declared
    here)."""

    process: Process
    run_id: str
    closed: bool
    wake: asyncio.Event
    progress: asyncio.Event
    lock: asyncio.Lock
    instance: WorkflowInstance | None
    tasks: list[WorkflowTask]
    preactivated: tuple[WorkflowActivationCompletion, HeldOutput] | None
    used_flags: set[int]
    history_length: int
    task_failure: str | None
    inbox_dirty: bool
    inbox_read_at: float
    inbox_cursor: int
    applied_cursor: int
    outcomes: list[tuple[int, int, AttemptOutcome]]
    pending_jobs: list[WorkflowActivationJob]
    pending_updates: list[WorkflowActivationJob]
    update_inbox_ids: dict[str, int]
    # Signals and cancel requests this run sends to other workflows, by (command kind, seq),
    # until their resolution is recorded; the ones being sent.
    external: dict[tuple[str, int], WorkflowCommand]
    external_sending: set[tuple[str, int]]
    row: Any

    if TYPE_CHECKING:  # Provided by RunDriver.
        def _registration(self) -> Any: ...
        def _new_instance(self, index: int) -> WorkflowInstance: ...
        def _evict(self) -> None: ...
        def _task_failed(self, index: int, message: str, stack: str = "",
                         nondeterminism: bool = False) -> None: ...
        async def visibility_written(self) -> None: ...
        def _on_child_closed(self, event: InboxEvent) -> None: ...

    # The inbox --------------------------------------------------------------------------------

    async def _read_inbox(self) -> dict[str, Any] | None:
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
            self._on_child_closed(event)
            return None
        if event.kind == "activity_result":
            token, outcome = rs.decode_remote_outcome(event.payload)
            parts = token.decode().split("/")
            if len(parts) == 3 and parts[0] == self.run_id:
                self.outcomes.append((int(parts[1]), int(parts[2]), outcome))
            return None
        job = rs.job_from_inbox(event)
        if job is not None and job.HasField("signal_workflow"):
            # Core gives the id of the signal's history event; ours is close to it (the
            # history builder numbers events exactly), and must not be 0.
            job.signal_workflow.originating_event_id = self.history_length + 1
        if job is not None and job.HasField("do_update"):
            self.update_inbox_ids.setdefault(job.do_update.id, event.id)
        if job is not None:
            (self.pending_updates if job.HasField("do_update") else self.pending_jobs).append(job)
        return None

    # Signals and cancel requests to other workflows --------------------------------------------

    def _send_external_commands(self) -> None:
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
        namespace = target.namespace or self.row.namespace
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
        self.pending_jobs.append(job)
        self.wake.set()

    # Updates ----------------------------------------------------------------------------------

    async def _admit_update(self, job: WorkflowActivationJob,
                            now: int) -> WorkflowTask | None:
        """Deliver an update live, validator first. A rejected update leaves no record (it is
        not history); an accepted one is recorded as delivered without its validator, which is
        how replay must see it (DESIGN §9.1)."""
        if self.task_failure is not None:
            self.pending_updates.insert(0, job)
            return None
        activation = WorkflowActivation(run_id=self.run_id, history_length=self.history_length)
        activation.timestamp.FromMilliseconds(now)
        activation.jobs.append(job)
        activation.available_internal_flags[:] = sorted(self.used_flags)
        # Held until the update is recorded (or rejected): a query must not see its handler's
        # effects before they are durable, nor read what it printed.
        await self.lock.acquire()
        held = HeldOutput()
        try:
            if self.instance is None:
                self.instance = self._new_instance(0)
            completion = await activate(self.instance, activation,
                                        self.process.activation_executor,
                                        self._registration().deadlock_timeout,
                                        self._registration().slots, held=held)
        except BaseException:
            self.lock.release()
            raise
        if completion.HasField("failed"):
            self.lock.release()
            held.discard()
            self._evict()
            self._task_failed(len(self.tasks), completion.failed.failure.message or
                              "workflow task failed")
            self.pending_updates.insert(0, job)
            return None
        commands = commands_of(completion)
        responses = [c.update_response for c in commands if c.HasField("update_response")
                     and c.update_response.protocol_instance_id == job.do_update.protocol_instance_id]
        others = [c for c in commands if not c.HasField("update_response")]
        if responses and responses[0].HasField("rejected") and not others:
            self.lock.release()
            held.release()  # A rejection is not history: nothing to wait for.
            await self.process.record_update_response(self.run_id, responses[0])
            return None
        recorded = WorkflowActivation()
        recorded.CopyFrom(activation)
        if responses and responses[0].HasField("accepted"):
            recorded.jobs[0].do_update.run_validator = False
        self.preactivated = (completion, held)  # The lock stays held until it is recorded.
        return WorkflowTask(recorded, identity=self.process.identity)

    # Queries ----------------------------------------------------------------------------------

    async def _catch_up(self, limit_s: float = 10.0) -> None:
        """Apply the run's inbox events written so far, as Temporal's queries are consistent:
        a query sees every signal (and cancel request) accepted before it."""
        events = await self.process.db_call(self.process.store.read_inbox, self.run_id,
                                             self.applied_cursor)
        if not events:
            return
        target = max(e.id for e in events)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while self.applied_cursor < target and not self.closed and self.task_failure is None:
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

    async def query(self, job: WorkflowActivationJob) -> WorkflowCommand:
        """Answer a query on the live instance (never recorded)."""
        await self._catch_up()
        await self.visibility_written()
        async with self.lock:
            if self.instance is None or self.task_failure is not None:
                raise LookupError(self.task_failure or "the workflow has no live state yet")
            activation = WorkflowActivation(run_id=self.run_id, jobs=[job])
            activation.timestamp.FromMilliseconds(now_ms())
            completion = await activate(self.instance, activation,
                                        self.process.activation_executor,
                                        self._registration().deadlock_timeout,
                                            self._registration().slots)
        if completion.HasField("failed"):
            raise LookupError(completion.failed.failure.message)
        for command in completion.successful.commands:
            if command.HasField("respond_to_query"):
                return command
        raise LookupError("the workflow did not answer the query")

