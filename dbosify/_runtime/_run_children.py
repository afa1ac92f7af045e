"""The child-workflow side of a run: starting children, cancelling them, and learning how they
closed (DESIGN §4, §9.5), as Temporal's server and Core do for one parent run.

The order is the engine's: a ``StartChildWorkflowExecution`` command is acted upon only once the
completion that holds it is recorded. The child's run id is derived from the parent's run id and
the command's seq (:func:`child_run_id`), so a start sent again after a crash finds the run it
created the first time instead of creating another. A child is an ordinary run in
``dbosify_runs`` (with ``parent_run_id`` set): whoever serves its task queue drives it. Its final
close (not a continue-as-new, retry or cron continuation) writes a ``child_closed`` event into
the parent's inbox in the close's own transaction (:mod:`._child_close`), which the parent turns
into the ``ResolveChildWorkflowExecution`` job Core would have given it. When the parent closes,
its children's ``ParentClosePolicy`` is applied in the parent's close transaction
(:func:`apply_parent_close_policies`).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from temporalio.api.common.v1 import WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import EventType, RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.bridge.proto.child_workflow import (
    ChildWorkflowCancellationType,
    ParentClosePolicy,
    StartChildWorkflowExecutionFailedCause,
)
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import StartChildWorkflowExecution, WorkflowCommand

from dbosify._runtime._child_close import notify_parent
from dbosify._runtime._schedule_spec import ScheduleSpecError, next_cron_time
from dbosify._runtime._starting import (
    Lineage,
    WorkflowAlreadyStarted,
    apply_close_policy,
    start_run,
)
from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, now_ms
from dbosify._store._inbox import InboxEvent
from dbosify._store._store import Store
from dbosify.history._events import copy_set_fields

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._runtime._run_context import RunContext

logger = logging.getLogger("dbosify")

_CHILD_NAMESPACE = uuid.UUID("4f1c3a52-5d0e-4f6b-9a43-0d6c1b7e2a91")
_CANCEL_TYPE = ChildWorkflowCancellationType
_POLICY = ParentClosePolicy


def child_run_id(parent_run_id: str, seq: int) -> str:
    """The run id of the child a parent run starts with command ``seq``: derived, not random,
    so that a start sent again after a crash finds the run it created the first time."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_run_id}/{seq}"))


@dataclass
class ChildState:
    """A child workflow a run asked for whose outcome its code has not seen yet."""

    seq: int
    command: StartChildWorkflowExecution
    run_id: str = ""
    """The child's first run, once its start is resolved."""
    starting: bool = False
    started: bool = False
    start_delivered: bool = False
    """The start resolution was handed to the code (so its close may follow)."""
    cancel_requested: bool = False
    cancel_handled: bool = False
    reason: str = ""
    """The reason the code gave its cancel."""
    resolved: bool = False
    """The code has seen the child's outcome (it may still run: abandoned, try-cancelled)."""
    closed: bool = False


def child_request(cmd: StartChildWorkflowExecution, parent_row: Any,
                  identity: str) -> StartWorkflowExecutionRequest:
    """The start request of the child a ``StartChildWorkflowExecution`` command asks for."""
    req = StartWorkflowExecutionRequest(
        namespace=cmd.namespace or parent_row.namespace,
        workflow_id=cmd.workflow_id,
        identity=identity,
        request_id=str(uuid.uuid4()),
        cron_schedule=cmd.cron_schedule,
    )
    req.workflow_type.name = cmd.workflow_type
    req.task_queue.name = cmd.task_queue or parent_row.task_queue
    req.input.payloads.extend(cmd.input)
    copy_set_fields(cmd, req, ("workflow_execution_timeout", "workflow_run_timeout",
                               "workflow_task_timeout", "retry_policy", "priority",
                               "search_attributes"))
    # Core's enum numbers its values as the API's.
    req.workflow_id_reuse_policy = cmd.workflow_id_reuse_policy
    for key, value in cmd.memo.items():
        req.memo.fields[key].CopyFrom(value)
    for key, value in cmd.headers.items():
        req.header.fields[key].CopyFrom(value)
    if cmd.cron_schedule:
        # Temporal's older cron: the child's first run waits for the first cron time.
        now = now_ms()
        try:
            req.workflow_start_delay.FromMilliseconds(
                max(next_cron_time(cmd.cron_schedule, now) - now, 0))
        except ScheduleSpecError as err:
            logger.error("child workflow %r: invalid cron schedule %r (%s); it starts now",
                         cmd.workflow_id, cmd.cron_schedule, err)
    return req


def _failure_info(failure: Failure, child: ChildState, namespace: str,
                  retry_state: RetryState.ValueType) -> None:
    info = failure.child_workflow_execution_failure_info
    info.namespace = namespace
    info.workflow_execution.CopyFrom(WorkflowExecution(workflow_id=child.command.workflow_id,
                                                       run_id=child.run_id))
    info.workflow_type.CopyFrom(WorkflowType(name=child.command.workflow_type))
    info.retry_state = retry_state


def cancelled_job(child: ChildState, namespace: str) -> WorkflowActivationJob:
    """Core's resolution of a child the parent cancelled (or that closed as cancelled)."""
    job = WorkflowActivationJob()
    job.resolve_child_workflow_execution.seq = child.seq
    failure = job.resolve_child_workflow_execution.result.cancelled.failure
    failure.message = "Child Workflow execution cancelled"
    failure.cause.canceled_failure_info.SetInParent()
    _failure_info(failure, child, namespace, RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE)
    return job


def start_cancelled_job(child: ChildState, namespace: str) -> WorkflowActivationJob:
    """Core's resolution of a child start the parent cancelled before it was sent: the child is
    never started, and no event stands for either."""
    job = WorkflowActivationJob()
    start = job.resolve_child_workflow_execution_start
    start.seq = child.seq
    failure = start.cancelled.failure
    failure.message = f"Child Workflow Execution cancelled before scheduled: {child.reason}"
    failure.cause.canceled_failure_info.SetInParent()
    _failure_info(failure, child, namespace, RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE)
    return job


def close_job(child: ChildState, namespace: str, event: HistoryEvent) -> WorkflowActivationJob:
    """The ``ResolveChildWorkflowExecution`` job Core makes of a child's close event."""
    E = EventType
    job = WorkflowActivationJob()
    resolve = job.resolve_child_workflow_execution
    resolve.seq = child.seq
    kind = event.event_type
    if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        payloads = event.workflow_execution_completed_event_attributes.result.payloads
        resolve.result.completed.SetInParent()
        if payloads:
            resolve.result.completed.result.CopyFrom(payloads[0])
        return job
    if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        done = cancelled_job(child, namespace)
        details = event.workflow_execution_canceled_event_attributes.details
        if details.payloads:
            cause = done.resolve_child_workflow_execution.result.cancelled.failure.cause
            cause.canceled_failure_info.details.CopyFrom(details)
        return done
    failure = resolve.result.failed.failure
    if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        attrs = event.workflow_execution_failed_event_attributes
        failure.message = "Child Workflow execution failed"
        failure.cause.CopyFrom(attrs.failure)
        retry_state = attrs.retry_state
    elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        failure.message = "Child Workflow execution timed out"
        failure.cause.message = "Timed out"
        failure.cause.timeout_failure_info.timeout_type = TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        retry_state = event.workflow_execution_timed_out_event_attributes.retry_state
    else:  # Terminated.
        failure.message = "Child Workflow execution terminated"
        failure.cause.message = "Terminated"
        failure.cause.terminated_failure_info.SetInParent()
        retry_state = RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE
    _failure_info(failure, child, namespace, retry_state)
    return job


# Written inside the parent's close transaction -----------------------------------------------

def _running_run_of(conn: sa.Connection, store: Store, namespace: str, workflow_id: str,
                    first_run_id: str) -> str | None:
    # The child's current run: a continue-as-new chain keeps its first run id.
    row = store.latest_run(conn, namespace, workflow_id)
    if row is None or row.status != RUNNING or row.first_execution_run_id != first_run_id:
        return None
    return str(row.run_id)


def apply_parent_close_policies(store: Store, conn: sa.Connection, parent_run_id: str,
                                namespace: str, children: list[ChildState],
                                identity: str) -> list[str]:
    """Apply each open child's ``ParentClosePolicy`` (inside the parent's close transaction);
    returns the runs written to, to be woken after the commit."""
    touched: list[str] = []
    for child in children:
        if child.closed:
            continue
        run = _running_run_of(conn, store, child.command.namespace or namespace,
                              child.command.workflow_id,
                              child.run_id or child_run_id(parent_run_id, child.seq))
        if run is not None and apply_close_policy(store, conn, run,
                                                  child.command.parent_close_policy,
                                                  parent_run_id, namespace, identity):
            touched.append(run)
    return touched


# The run's part -------------------------------------------------------------------------------

class ChildrenPart:
    """The child workflows of a run (:class:`~dbosify._runtime._driver.RunDriver`)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.process: Process = run.process
        self.run_id = run.run_id
        self.children: dict[int, ChildState] = {}
        """By seq: the children whose outcome the code has not seen, and the ones it stopped
        waiting for (abandoned, try-cancelled) until they close."""

    def apply_command(self, command: WorkflowCommand) -> None:
        """A recorded child command (live, or replayed on recovery): note what it asks for;
        :meth:`drive` carries it out once the run is live."""
        if command.HasField("start_child_workflow_execution"):
            cmd = command.start_child_workflow_execution
            self.children[cmd.seq] = ChildState(cmd.seq, cmd)
        else:
            child = self.children.get(command.cancel_child_workflow_execution.child_workflow_seq)
            if child is not None and not child.resolved:
                child.cancel_requested = True
                child.reason = command.cancel_child_workflow_execution.reason

    def job_replayed(self, job: WorkflowActivationJob) -> None:
        """A recorded task resolved a child's start or the child itself (on recovery this is
        how the run knows not to start it again, or not to wait for it)."""
        if job.HasField("resolve_child_workflow_execution_start"):
            start = job.resolve_child_workflow_execution_start
            child = self.children.get(start.seq)
            if child is None:
                return
            if start.HasField("succeeded"):
                child.run_id = start.succeeded.run_id
                child.starting = child.started = child.start_delivered = True
            else:
                del self.children[start.seq]
        elif job.HasField("resolve_child_workflow_execution"):
            resolve = job.resolve_child_workflow_execution
            child = self.children.get(resolve.seq)
            if child is None:
                return
            child.resolved = True
            child.cancel_handled = True
            if not resolve.result.HasField("cancelled"):
                del self.children[resolve.seq]  # Completed or failed: it closed.

    def drive(self) -> None:
        """Carry out what the recorded commands ask of children (live only; called when the
        run has nothing else to deliver)."""
        namespace = self.run.row.namespace
        for child in list(self.children.values()):
            if child.resolved:
                continue
            if not child.starting:
                if child.cancel_requested:
                    # Cancelled in the task that asked for it: never sent, as in Core.
                    self._deliver(start_cancelled_job(child, namespace))
                    del self.children[child.seq]
                    continue
                child.starting = True
                self.process.spawn(self._start_child(child))
                continue
            if not child.start_delivered:
                continue
            if child.cancel_requested and not child.cancel_handled:
                child.cancel_handled = True
                ctype = child.command.cancellation_type
                if ctype != _CANCEL_TYPE.ABANDON:
                    self.process.spawn(self._cancel_child(child))
                if ctype in (_CANCEL_TYPE.ABANDON, _CANCEL_TYPE.TRY_CANCEL):
                    child.resolved = True
                    self._deliver(cancelled_job(child, namespace))
                    continue

    def _deliver(self, job: WorkflowActivationJob) -> None:
        if not self.run.closed:
            self.run.deliver(job)

    async def _start_child(self, child: ChildState) -> None:
        process = self.process
        store = process.store
        cmd = child.command
        run_id = child_run_id(self.run_id, child.seq)
        req = child_request(cmd, self.run.row, process.identity)
        queue, wf_type = req.task_queue.name, req.workflow_type.name
        local = process.serves_workflows(queue)
        owner = process.executor_id if local else None
        build_id = process.start_build_id(queue, wf_type) if local else None
        if local:
            process.expect_run(run_id)
        parent_clock = getattr(self.run, "clock", None)  # Parts built outside a driver lack one.
        # Per-workflow time skipping: the child starts at its parent's virtual time.
        clock = None if parent_clock is None else parent_clock.child_clock().to_json()

        def write() -> tuple[bool, Any]:
            with store.engine.begin() as conn:
                # Sent before a crash: the child exists already (running or not).
                if conn.execute(sa.select(t.runs.c.run_id)
                                .where(t.runs.c.run_id == run_id)).first() is not None:
                    return False, None
                started = start_run(store, req, owner=owner, conn=conn, run_id=run_id,
                                    build_id=build_id,
                                    lineage=Lineage.of_child_of(self.run.row,
                                                                cmd.parent_close_policy),
                                    time_skipping=clock)
                return started.created, started.row

        job = WorkflowActivationJob()
        start = job.resolve_child_workflow_execution_start
        start.seq = child.seq
        def write_once() -> tuple[bool, Any]:
            try:
                return write()
            except sa.exc.IntegrityError:
                # A run of the id started between the policy check and the insert (the
                # one-running-run index): check again, and fail as a conflict if it runs.
                return write()

        try:
            created, row = await process.db_call(write_once)
        except WorkflowAlreadyStarted:
            process.forget_run(run_id)
            start.failed.workflow_id = cmd.workflow_id
            start.failed.workflow_type = cmd.workflow_type
            start.failed.cause = StartChildWorkflowExecutionFailedCause.\
                START_CHILD_WORKFLOW_EXECUTION_FAILED_CAUSE_WORKFLOW_ALREADY_EXISTS
            self.children.pop(child.seq, None)
            self._deliver(job)
            return
        if created and local:
            process.launch_local(run_id, row)
        elif local:
            process.forget_run(run_id)
        if child.start_delivered:
            return  # Its close came first, and resolved the start with it.
        child.run_id = run_id
        child.started = child.start_delivered = True
        start.succeeded.run_id = run_id
        self._deliver(job)

    async def _cancel_child(self, child: ChildState) -> None:
        # Core's own request-cancel-external of the child; keyed by this run and seq, so sent
        # again after a crash it is still delivered once.
        process = self.process
        request = RequestCancelWorkflowExecutionRequest(
            namespace=self.run.row.namespace, identity=process.identity,
            reason="Parent workflow requested cancel")
        sent_to = await process.db_call(
            process.store.send_to_workflow, child.command.namespace or self.run.row.namespace,
            child.command.workflow_id, "", "cancel", request.SerializeToString(),
            f"{self.run_id}/cancel_child/{child.seq}")
        if sent_to is not None:
            process.wake_run(sent_to)
        # WAIT_CANCELLATION_REQUESTED resolves with the child's close, as Core's child state
        # machine does (it stays started after the request), like WAIT_CANCELLATION_COMPLETED.

    def on_child_closed(self, event: InboxEvent) -> None:
        """A child's close came through the inbox: the child's resolution, for the next task."""
        data = json.loads(event.payload)
        first_run = data["first_run"]
        child = next((c for c in self.children.values()
                      if (c.run_id or child_run_id(self.run_id, c.seq)) == first_run), None)
        if child is None:
            return  # Resolved already (abandoned, try-cancelled), or not this run's child.
        if child.resolved:
            child.closed = True
            del self.children[child.seq]
            return
        close = HistoryEvent()
        close.ParseFromString(base64.b64decode(data["event"]))
        if not child.start_delivered:
            # Its start is still being written (or, after a crash, not sent again yet): the
            # close proves it started. Resolved here, before the close and in the same task,
            # rather than held: a held event would be past the inbox cursor the next step
            # records, and lost to a crash.
            child.run_id = first_run
            child.starting = child.started = child.start_delivered = True
            start = WorkflowActivationJob()
            start.resolve_child_workflow_execution_start.seq = child.seq
            start.resolve_child_workflow_execution_start.succeeded.run_id = first_run
            self._deliver(start)
        child.resolved = child.closed = True
        del self.children[child.seq]
        self._deliver(close_job(child, self.run.row.namespace, close))

    async def apply_close_policies_after(self) -> None:
        """Apply the children's parent close policies once the run was terminated or timed
        out. The close applied them already to children whose policy is stored
        (:func:`~dbosify._runtime._starting.close_children_of`); this covers those recorded before schema version 4, and
        applying a policy twice is harmless (a closed child is left alone, a cancel request
        is keyed by this run)."""
        process = self.process
        children = [c for c in self.children.values() if not c.closed]
        if not children or self.run.row is None:
            return

        def write() -> list[str]:
            with process.store.engine.begin() as conn:
                return apply_parent_close_policies(process.store, conn, self.run_id,
                                                   self.run.row.namespace, children,
                                                   process.identity)

        for run_id in await process.db_call(write):
            process.wake_run(run_id)

    def open_children(self) -> list[ChildState]:
        """Children that may still run (for the parent close policy)."""
        return [c for c in self.children.values() if not c.closed]



def has_close_followups(part: ChildrenPart) -> bool:
    """Whether a run's close (``part``: its children) writes more than its own row: it is a
    child (its parent is told), or it has children (their parent close policy)."""
    return bool(getattr(part.run.row, "parent_run_id", None) or part.children)


def write_close_followups(store: Store, conn: sa.Connection, part: ChildrenPart, close_event: bytes,
                          final: bool, identity: str) -> list[str]:
    """What a run's close (``part``: its children) writes besides its row, in its transaction:
    the parent's inbox event (``final``: the run is not continued), and its children's parent
    close policies. Returns the runs to wake once committed."""
    wake: list[str] = []
    if final:
        parent = notify_parent(store, conn, part.run.row, close_event)
        if parent is not None:
            wake.append(parent)
    for child in list(part.children.values()):
        if not child.starting and not child.cancel_requested:
            # Asked for in the task that closes the run: started here, for any worker of its
            # task queue to claim, as Temporal's server starts it; the close policy below then
            # applies to it (terminated at once, asked to cancel, or left to run).
            child.starting = True
            req = child_request(child.command, part.run.row, identity)
            try:
                start_run(store, req, owner=None, conn=conn,
                          run_id=child_run_id(part.run_id, child.seq),
                          lineage=Lineage.of_child_of(part.run.row,
                                                      child.command.parent_close_policy))
            except WorkflowAlreadyStarted:
                logger.warning("child workflow %r of %r was not started: its id is running",
                               child.command.workflow_id, part.run.row.workflow_id)
    if part.children:
        wake += apply_parent_close_policies(store, conn, part.run_id, part.run.row.namespace,
                                            part.open_children(), identity)
    return wake
