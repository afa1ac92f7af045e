"""Closing runs: completed, failed, cancelled, continued as new, timed out."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType, RetryState, TimeoutType, WorkflowExecutionStatus
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.bridge.proto.workflow_commands import (
    ContinueAsNewWorkflowExecution,
    WorkflowCommand,
)
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._records import CloseRecords
from dbosify._runtime._retry import decide_retry
from dbosify._runtime._run_children import has_close_followups, write_close_followups
from dbosify._runtime._scheduler import cron_continuation
from dbosify._runtime._starting import Lineage, start_run
from dbosify.history._events import close_event_from_completion

if TYPE_CHECKING:
    from dbosify._runtime._driver import RunDriver
    from dbosify._runtime._process import Process

logger = logging.getLogger("dbosify")

S = WorkflowExecutionStatus
E = EventType
STATUS_OF_CLOSE_EVENT = {
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: S.WORKFLOW_EXECUTION_STATUS_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: S.WORKFLOW_EXECUTION_STATUS_FAILED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: S.WORKFLOW_EXECUTION_STATUS_CANCELED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: S.WORKFLOW_EXECUTION_STATUS_TERMINATED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: S.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: S.WORKFLOW_EXECUTION_STATUS_TIMED_OUT,
}


def continuation_request(old: StartWorkflowExecutionRequest,
                         cmd: ContinueAsNewWorkflowExecution) -> StartWorkflowExecutionRequest:
    """The start request of the run a continue-as-new command asks for (unset fields carry
    over from the current run, as in Temporal)."""
    req = StartWorkflowExecutionRequest()
    req.namespace = old.namespace
    req.workflow_id = old.workflow_id
    req.workflow_type.name = cmd.workflow_type or old.workflow_type.name
    req.task_queue.name = cmd.task_queue or old.task_queue.name
    req.input.payloads.extend(cmd.arguments)
    if cmd.HasField("workflow_run_timeout"):
        req.workflow_run_timeout.CopyFrom(cmd.workflow_run_timeout)
    elif old.HasField("workflow_run_timeout"):
        req.workflow_run_timeout.CopyFrom(old.workflow_run_timeout)
    if cmd.HasField("workflow_task_timeout"):
        req.workflow_task_timeout.CopyFrom(cmd.workflow_task_timeout)
    elif old.HasField("workflow_task_timeout"):
        req.workflow_task_timeout.CopyFrom(old.workflow_task_timeout)
    if old.HasField("workflow_execution_timeout"):
        req.workflow_execution_timeout.CopyFrom(old.workflow_execution_timeout)
    req.identity = old.identity
    req.request_id = str(uuid.uuid4())
    if cmd.memo:
        for key, value in cmd.memo.items():
            req.memo.fields[key].CopyFrom(value)
    elif old.HasField("memo"):
        req.memo.CopyFrom(old.memo)
    if cmd.HasField("search_attributes"):
        req.search_attributes.CopyFrom(cmd.search_attributes)
    elif old.HasField("search_attributes"):
        req.search_attributes.CopyFrom(old.search_attributes)
    if cmd.headers:
        for key, value in cmd.headers.items():
            req.header.fields[key].CopyFrom(value)
    elif old.HasField("header"):
        req.header.CopyFrom(old.header)
    if cmd.HasField("retry_policy"):
        req.retry_policy.CopyFrom(cmd.retry_policy)
    elif old.HasField("retry_policy"):
        req.retry_policy.CopyFrom(old.retry_policy)
    if cmd.HasField("backoff_start_interval"):
        req.workflow_start_delay.CopyFrom(cmd.backoff_start_interval)
    return req


def retry_request(old: StartWorkflowExecutionRequest, failure: Failure,
                  delay_ms: int) -> StartWorkflowExecutionRequest:
    """The start request of a failed run's retry (its ``RetryPolicy``): the same workflow and
    input, starting after the backoff, with the failure the new run sees as the last one."""
    req = StartWorkflowExecutionRequest()
    req.CopyFrom(old)
    req.request_id = ""
    req.ClearField("workflow_start_delay")
    if delay_ms > 0:
        req.workflow_start_delay.FromMilliseconds(delay_ms)
    req.continued_failure.CopyFrom(failure)
    return req


@dataclass(frozen=True)
class _Following:
    """The run that follows a closing one in its chain (continue-as-new, retry, cron)."""

    request: StartWorkflowExecutionRequest
    attempt: int = 1
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _retry_or_cron(driver: RunDriver, failure: Failure, at_ms: int
                   ) -> tuple[_Following | None, RetryState.ValueType | None]:
    """What follows a failed (or run-timed-out) run: a retry by its retry policy, else its
    next cron run (a cron run is not followed while retrying), and the retry state to record
    when no retry follows."""
    retry_state: RetryState.ValueType | None = None
    req = driver.start_request
    if req.HasField("retry_policy"):
        # A workflow's retries are bounded by its execution timeout, not its run timeout.
        execution_ms = int(req.workflow_execution_timeout.ToMilliseconds())
        decision = decide_retry(req.retry_policy, driver.row.attempt, failure, now_ms=at_ms,
                                schedule_to_close_deadline_ms=driver.row.start_time_ms
                                + execution_ms if execution_ms > 0 else None)
        if decision.retry:
            return _Following(retry_request(req, failure, decision.delay_ms),
                              attempt=driver.row.attempt + 1), None
        retry_state = decision.state
    return _cron_after(driver, at_ms, failure=failure), retry_state


def _cron_after(driver: RunDriver, at_ms: int, *, result: Payload | None = None,
                failure: Failure | None = None) -> _Following | None:
    # Temporal's older cron: a completed, finally failed or timed-out run is followed by the
    # next one, at the next cron time.
    request = cron_continuation(driver.start_request, at_ms, result=result, failure=failure)
    return _Following(request) if request is not None else None


class Closer:
    """Writes a run's close and whatever follows from it, in one transaction."""

    def __init__(self, process: Process) -> None:
        self.process = process

    async def close_from_command(self, driver: RunDriver, completion: WorkflowActivationCompletion,
                                 command: WorkflowCommand, at_ms: int) -> None:
        """Close a run whose code completed, failed, was cancelled or continued as new."""
        follow: _Following | None = None
        retry_state: RetryState.ValueType | None = None
        if command.HasField("continue_as_new_workflow_execution"):
            follow = _Following(continuation_request(
                driver.start_request, command.continue_as_new_workflow_execution))
        elif command.HasField("fail_workflow_execution"):
            follow, retry_state = _retry_or_cron(
                driver, command.fail_workflow_execution.failure, at_ms)
        elif command.HasField("complete_workflow_execution"):
            done = command.complete_workflow_execution
            follow = _cron_after(driver, at_ms, result=done.result if done.HasField("result")
                                 else None)
        event = close_event_from_completion(
            completion, time_ms=at_ms, retry_state=retry_state,
            new_execution_run_id=follow.run_id if follow is not None else None)
        if event is None:
            return
        records = CloseRecords(list(driver.unrecorded_tasks), completion).to_json()
        await self._close(driver, event, at_ms, driver.history_length, records, follow)

    async def close_timed_out(self, driver: RunDriver, at_ms: int) -> None:
        """Close a run whose run timeout (else execution timeout) passed. As on Temporal, a
        run timeout is retried by the run's retry policy, else followed by its next cron run;
        an execution timeout ends the chain."""
        follow: _Following | None = None
        retry_state: RetryState.ValueType = RetryState.RETRY_STATE_TIMEOUT
        if driver.start_request.workflow_run_timeout.ToMilliseconds() > 0:
            failure = Failure(message="workflow run timed out")
            failure.timeout_failure_info.timeout_type = TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
            follow, decided = _retry_or_cron(driver, failure, at_ms)
            retry_state = decided if decided is not None else retry_state
        event = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT)
        event.event_time.FromMilliseconds(at_ms)
        attrs = event.workflow_execution_timed_out_event_attributes
        attrs.retry_state = retry_state
        if follow is not None:
            attrs.new_execution_run_id = follow.run_id
        # + 1: the close event itself, which no workflow command produced.
        await self._close(driver, event, at_ms, driver.history_length + 1, None, follow)

    async def _close(self, driver: RunDriver, event: HistoryEvent, at_ms: int,
                     history_length: int, records: str | None,
                     follow: _Following | None) -> None:
        process = self.process
        status = STATUS_OF_CLOSE_EVENT[event.event_type]
        new_request = follow.request if follow is not None else None
        new_run_id = follow.run_id if follow is not None else None
        owner = None
        build_id = None
        if new_request is not None and process.serves_workflows(new_request.task_queue.name):
            owner = process.executor_id
            # The next run goes to the newest version here, as Temporal's continue-as-new of
            # a pinned run may upgrade.
            build_id = process.start_build_id(new_request.task_queue.name,
                                              new_request.workflow_type.name)
        row = driver.row
        data = event.SerializeToString()
        # Per-workflow time skipping goes on along the chain, from this virtual time.
        following_clock = driver.clock.continued_clock().to_json() \
            if follow is not None and driver.clock is not None else None

        # Attempts offered to other processes and saved heartbeats go with the run, in the
        # close's transaction (one commit per close, not two).
        activities = driver.activity_part
        drop_tasks = activities.offered_remotely or driver.recovering or \
            activities.heartbeats_saved

        def write() -> bool:
            store = process.store
            followups = has_close_followups(driver.child_part)
            one_statement = new_request is None and not drop_tasks and not followups
            with store.transaction(one_statement=one_statement) as conn:
                closed = store.close_run(driver.run_id, status, data, at_ms, history_length,
                                         conn=conn, close_records=records)
                if closed and follow is not None:
                    start_run(store, follow.request, owner=owner, apply_policies=False,
                              run_id=follow.run_id,
                              first_execution_run_id=row.first_execution_run_id,
                              continued_from_run_id=driver.run_id, attempt=follow.attempt,
                              conn=conn, build_id=build_id, lineage=Lineage.of(row),
                              time_skipping=following_clock)
                if closed and followups:
                    to_wake.extend(write_close_followups(store, conn, driver.child_part, data,
                                                         new_request is None, process.identity))
                if drop_tasks:
                    store.drop_activity_tasks(driver.run_id, conn=conn)
                return closed

        to_wake: list[str] = []  # A parent, children (see _run_children).
        process.closing_here.add(driver.run_id)
        try:
            closed = await process.db_call(write)
            process.notify_closed(driver.run_id, data)
        finally:
            process.closing_here.discard(driver.run_id)
        for run_id in to_wake:
            process.wake_run(run_id)
        if closed and owner is not None and new_run_id is not None:
            try:
                await process.start_run(new_run_id)
            except Exception:
                # The close is written: retrying it cannot help. Give the new run back, so a
                # worker of its task queue (this one too) claims and starts it.
                logger.exception("starting run %s (after %s) failed; releasing it to any worker",
                                 new_run_id, driver.run_id)
                await process.db_call(process.store.release_runs, [new_run_id],
                                      process.executor_id)
                process.wake_dispatch()

