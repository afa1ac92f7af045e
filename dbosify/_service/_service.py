"""Temporal's WorkflowService, answered from the database (DESIGN §9.4).

:class:`DatabaseService` is a ``temporalio.service.ServiceClient``: temporalio's own ``Client``
runs on it unchanged (handles, ``result()`` following runs, ``describe()``, error mapping,
interceptors, ``fetch_history()``), and each RPC it makes is answered here from dbosify's tables
and the runs' DBOS records, as a Temporal server would answer it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import google.protobuf.message
import sqlalchemy as sa
import temporalio.service
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.enums.v1 import (
    HistoryEventFilterType,
    QueryRejectCondition,
    WorkflowExecutionStatus,
    WorkflowIdConflictPolicy,
)
from temporalio.api.errordetails.v1 import (
    MultiOperationExecutionFailure,
    WorkflowExecutionAlreadyStartedFailure,
)
from temporalio.api.failure.v1 import MultiOperationExecutionAborted
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    CountWorkflowExecutionsResponse,
    DescribeWorkflowExecutionRequest,
    DescribeWorkflowExecutionResponse,
    ExecuteMultiOperationRequest,
    ExecuteMultiOperationResponse,
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryResponse,
    ListWorkflowExecutionsRequest,
    ListWorkflowExecutionsResponse,
    PollWorkflowExecutionUpdateRequest,
    PollWorkflowExecutionUpdateResponse,
    QueryWorkflowRequest,
    QueryWorkflowResponse,
    RequestCancelWorkflowExecutionRequest,
    RequestCancelWorkflowExecutionResponse,
    SignalWithStartWorkflowExecutionRequest,
    SignalWithStartWorkflowExecutionResponse,
    SignalWorkflowExecutionRequest,
    SignalWorkflowExecutionResponse,
    StartWorkflowExecutionRequest,
    StartWorkflowExecutionResponse,
    TerminateWorkflowExecutionRequest,
    TerminateWorkflowExecutionResponse,
    UpdateWorkflowExecutionRequest,
    UpdateWorkflowExecutionResponse,
)
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.service import RPCStatusCode

from dbosify._runtime._closing import STATUS_OF_CLOSE_EVENT
from dbosify._runtime._process import Process
from dbosify._runtime._starting import (
    StartedRun,
    WorkflowAlreadyStarted,
    start_run,
    starts_in_one_statement,
    terminate_in,
)
from dbosify._service import _updates, _visibility_rpc
from dbosify._service._async_activities import AsyncActivityService
from dbosify._service._describe import describe_run
from dbosify._service._errors import already_started, invalid_argument, not_found, rpc_error
from dbosify._service._history import RecordReader, replay_query
from dbosify._service._schedules import ScheduleService, delay_to_first_cron_time
from dbosify._service._time_skipping import TimeSkippingService, time_skipping_info

S = WorkflowExecutionStatus
RUNNING = S.WORKFLOW_EXECUTION_STATUS_RUNNING
_QUERY_WAIT_S = 10.0
"""How long a query waits for the process that drives the run before replaying it here."""
_LONG_POLL_S = 20.0
_POLL_AGAIN = b"dbosify:poll-again"
"""A result long-poll answers with an empty page after this long; temporalio's client polls
again (the way a Temporal server caps its long-polls)."""
_AFTER = b"dbosify:after:"
"""A history long poll's page token: the events after this many are the next page."""
_HISTORY_POLL_S = 0.25


class _ClosedRun:
    """What a result poll needs of a run this process just closed (no re-read)."""

    def __init__(self, close_event: bytes, history_length: int) -> None:
        event = HistoryEvent()
        event.ParseFromString(close_event)
        self.close_event = close_event
        self.status = STATUS_OF_CLOSE_EVENT[event.event_type]
        self.history_length = history_length + 1


class DatabaseService(ScheduleService, AsyncActivityService, TimeSkippingService,
                      temporalio.service.ServiceClient):
    """A Temporal service client whose server is the database."""

    def __init__(self, process: Process, config: temporalio.service.ConnectConfig) -> None:
        super().__init__(config)
        self.process = process
        self.reader = RecordReader(process)
        if process.replay_answerer is None:
            process.replay_answerer = self._answer_from_records
        self._metadata: Mapping[str, str | bytes] = dict(config.rpc_metadata)
        self.closed = False
        """Set by ``Client.close()``: the client's calls are refused from then on."""

    @property
    def worker_service_client(self) -> Any:
        raise NotImplementedError(
            "temporalio.worker.Worker needs a Temporal server; with dbosify use "
            "dbosify.worker.Worker, which takes the same arguments")

    def update_rpc_metadata(self, metadata: Mapping[str, str | bytes]) -> None:
        self._metadata = dict(metadata)

    def update_api_key(self, api_key: str | None) -> None:
        """API keys mean nothing to a database; accepted for compatibility."""

    async def _rpc_call(
        self,
        rpc: str,
        req: google.protobuf.message.Message,
        resp_type: type[temporalio.service.ServiceResponse],
        *,
        service: str,
        retry: bool,
        metadata: Mapping[str, str | bytes],
        timeout: timedelta | None,
    ) -> temporalio.service.ServiceResponse:
        if self.closed:
            raise rpc_error(RPCStatusCode.UNAVAILABLE,
                            "this client was closed (Client.close()); connect a new client")
        if self.process.closed:
            raise rpc_error(RPCStatusCode.UNAVAILABLE,
                            f"this client's database {self.process.db.redacted} was closed "
                            "(the process switched databases); connect a new client")
        handler = getattr(self, f"_rpc_{rpc}", None) if service == "workflow" else None
        if handler is None:
            raise rpc_error(RPCStatusCode.UNIMPLEMENTED,
                            f"dbosify does not answer {service}.{rpc} (yet)")
        seconds = timeout.total_seconds() if timeout is not None else None
        result: temporalio.service.ServiceResponse = await handler(req, seconds)
        return result

    # Helpers ----------------------------------------------------------------------------------

    async def _run(self, namespace: str, workflow_id: str, run_id: str = "") -> Any:
        if not workflow_id:
            raise invalid_argument("workflow id is not set")
        row = await self.process.db_call(self.process.store.get_run, namespace or "default",
                                         workflow_id, run_id)
        if row is None:
            what = f"workflow {workflow_id!r}" + (f" run {run_id}" if run_id else "")
            raise not_found(f"workflow execution not found: {what}")
        return row

    async def _running(self, namespace: str, workflow_id: str, run_id: str = "") -> Any:
        row = await self._run(namespace, workflow_id, run_id)
        if row.status != RUNNING:
            raise not_found(f"workflow execution already completed: workflow {workflow_id!r} "
                            f"run {row.run_id}")
        return row

    # Start --------------------------------------------------------------------------------------

    @staticmethod
    def _validate_start(req: StartWorkflowExecutionRequest) -> None:
        if not req.workflow_id:
            raise invalid_argument("workflow id is not set")
        if not req.workflow_type.name:
            raise invalid_argument("workflow type is not set")
        if not req.task_queue.name:
            raise invalid_argument("task queue is not set")

    async def _start(self, req: StartWorkflowExecutionRequest,
                     signal: SignalWorkflowExecutionRequest | None = None) -> tuple[str, bool]:
        self._validate_start(req)
        delay_to_first_cron_time(req)
        process = self.process
        local = process.serves_workflows(req.task_queue.name)
        owner = process.executor_id if local else None

        run_id = str(uuid.uuid4())
        if local:
            process.expect_run(run_id)

        # Pinned to the version of the worker here that will drive it (DESIGN §6).
        build_id = process.start_build_id(req.task_queue.name, req.workflow_type.name) \
            if local else None
        def write(optimistic: bool) -> StartedRun:
            one_statement = optimistic and signal is None and starts_in_one_statement(req, owner)
            with process.store.transaction(one_statement=one_statement) as conn:
                started = start_run(process.store, req, owner=owner, conn=conn, run_id=run_id,
                                    optimistic=optimistic, build_id=build_id)
                if signal is not None:
                    process.store.append_inbox(started.run_id, "signal",
                                               signal.SerializeToString(),
                                               signal.request_id or None, conn=conn)
                return started

        def write_once() -> StartedRun:
            try:
                return write(optimistic=signal is None)
            except sa.exc.IntegrityError:
                return write(optimistic=False)  # A run of this id is running: apply policies.

        try:
            started = await process.db_call(write_once)
        except WorkflowAlreadyStarted as err:
            process.forget_run(run_id)
            raise already_started(str(err), err.run_id, req.request_id) from None
        if not started.created:
            process.forget_run(run_id)
        if started.created and local:
            process.launch_local(started.run_id, started.row)
        if signal is not None:
            process.wake_run(started.run_id)
        return started.run_id, started.created

    async def _rpc_start_workflow_execution(self, req: StartWorkflowExecutionRequest,
                                            _timeout: float | None
                                            ) -> StartWorkflowExecutionResponse:
        run_id, created = await self._start(req)
        response = StartWorkflowExecutionResponse(run_id=run_id, started=created)
        if req.request_eager_execution and created and \
                self.process.serves_workflows(req.task_queue.name):
            # A worker of this process took the new run at once, as an eager start hands the
            # first workflow task to the starter's own worker; temporalio's client reads only
            # that the field is set (the handle's __temporal_eagerly_started).
            response.eager_workflow_task.SetInParent()
        return response

    async def _rpc_signal_with_start_workflow_execution(
            self, req: SignalWithStartWorkflowExecutionRequest, _timeout: float | None
    ) -> SignalWithStartWorkflowExecutionResponse:
        start = StartWorkflowExecutionRequest(
            namespace=req.namespace, workflow_id=req.workflow_id, workflow_type=req.workflow_type,
            task_queue=req.task_queue, input=req.input,
            workflow_execution_timeout=req.workflow_execution_timeout,
            workflow_run_timeout=req.workflow_run_timeout,
            workflow_task_timeout=req.workflow_task_timeout, identity=req.identity,
            request_id=req.request_id, workflow_id_reuse_policy=req.workflow_id_reuse_policy,
            # Signal-with-start signals the running execution if there is one.
            workflow_id_conflict_policy=req.workflow_id_conflict_policy or
            WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
            retry_policy=req.retry_policy, cron_schedule=req.cron_schedule, memo=req.memo,
            search_attributes=req.search_attributes, header=req.header,
            workflow_start_delay=req.workflow_start_delay, user_metadata=req.user_metadata,
            priority=req.priority)
        signal = SignalWorkflowExecutionRequest(
            namespace=req.namespace, signal_name=req.signal_name, input=req.signal_input,
            identity=req.identity, request_id=req.request_id or str(uuid.uuid4()),
            header=req.header)
        signal.workflow_execution.workflow_id = req.workflow_id
        run_id, created = await self._start(start, signal)
        return SignalWithStartWorkflowExecutionResponse(run_id=run_id, started=created)

    # History and results ------------------------------------------------------------------------

    async def _rpc_get_workflow_execution_history(
            self, req: GetWorkflowExecutionHistoryRequest, timeout: float | None
    ) -> GetWorkflowExecutionHistoryResponse:
        process = self.process
        namespace, execution = req.namespace, req.execution
        if req.history_event_filter_type != HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT:
            if req.wait_new_event:
                return await self._wait_new_events(req, timeout)
            row = await self._run(namespace, execution.workflow_id, execution.run_id)
            records = await self.reader.records(row)
            events = records.history(process.identity)
            return GetWorkflowExecutionHistoryResponse(history=History(events=events))
        if req.wait_new_event:
            row = await self._wait_closed(namespace, execution.workflow_id, execution.run_id,
                                          min(timeout or _LONG_POLL_S, _LONG_POLL_S))
        else:
            row = await self._run(namespace, execution.workflow_id, execution.run_id)
        if row.status == RUNNING:
            # A capped long poll that saw no close: an empty page *with* a page token, as a
            # Temporal server answers, so temporalio's client polls again (a page without one
            # ends its iteration: result() would raise "No completion event found").
            return GetWorkflowExecutionHistoryResponse(
                next_page_token=_POLL_AGAIN if req.wait_new_event else b"")
        event = HistoryEvent()
        event.ParseFromString(row.close_event)
        event.event_id = max(row.history_length, 1)
        return GetWorkflowExecutionHistoryResponse(history=History(events=[event]))

    async def _wait_new_events(self, req: GetWorkflowExecutionHistoryRequest,
                               timeout: float | None) -> GetWorkflowExecutionHistoryResponse:
        """A history long poll (``wait_new_event``): the events after the page token's, once
        there are any; while the run is open the page carries a token for the next ones, so
        temporalio's client keeps following it until the close event."""
        execution = req.execution
        token = req.next_page_token
        after = int(token[len(_AFTER):]) if token.startswith(_AFTER) else 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout or _LONG_POLL_S, _LONG_POLL_S)
        while True:
            row = await self._run(req.namespace, execution.workflow_id, execution.run_id)
            events = (await self.reader.records(row)).history(self.process.identity)
            left = deadline - loop.time()
            if len(events) > after or row.status != RUNNING or left <= 0:
                page = GetWorkflowExecutionHistoryResponse(history=History(events=events[after:]))
                if row.status == RUNNING:
                    page.next_page_token = _AFTER + str(max(len(events), after)).encode()
                return page
            # Woken at once by the close; other new events are seen within the poll period.
            await self._wait_closed(req.namespace, execution.workflow_id, row.run_id,
                                    min(left, _HISTORY_POLL_S))

    async def _wait_closed(self, namespace: str, workflow_id: str, run_id: str,
                           seconds: float) -> Any:
        """The run once closed, or still running after ``seconds`` (a capped long poll)."""
        process = self.process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        local = bool(run_id) and (run_id in process.drivers or run_id in process.fresh_runs)
        while True:
            # Registered before the read, so a close between the two is not missed.
            future = process.wait_closed(run_id) if run_id else None
            try:
                if local and future is not None:
                    # Driven here: its close wakes us with the close event, no read needed.
                    local = False
                    try:
                        event = await asyncio.wait_for(asyncio.shield(future),
                                                       max(deadline - loop.time(), 0.0))
                        return _ClosedRun(event, 0) if event else \
                            await self._run(namespace, workflow_id, run_id)
                    except asyncio.TimeoutError:
                        continue
                row = await self._run(namespace, workflow_id, run_id)
                if row.status != RUNNING or future is None:
                    if row.status != RUNNING:
                        return row
                    run_id = row.run_id
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    return row
                # Closed here: the future carries the close event. Closed by another process:
                # NOTIFY resolves it empty (Postgres), or the next read notices (SQLite poll).
                poll = 5.0
                if run_id not in process.drivers:
                    process.ensure_listener()
                    poll = process.poll_interval
                try:
                    event = await asyncio.wait_for(asyncio.shield(future), min(left, poll))
                except asyncio.TimeoutError:
                    continue
                if event:
                    return _ClosedRun(event, row.history_length)
            finally:
                if future is not None:
                    process.forget_waiter(run_id, future)

    # Describe, signal, cancel, terminate ----------------------------------------------------

    async def _rpc_describe_workflow_execution(
            self, req: DescribeWorkflowExecutionRequest, _timeout: float | None
    ) -> DescribeWorkflowExecutionResponse:
        row = await self._run(req.namespace, req.execution.workflow_id, req.execution.run_id)
        attrs = await self.process.db_call(self.process.store.search_attributes_of, [row.run_id])
        driver = self.process.drivers.get(row.run_id)
        response = describe_run(row, attrs[row.run_id], driver)
        if row.time_skipping is not None or (driver is not None and driver.clock is not None):
            info = time_skipping_info(row, driver)
            if info is not None:
                response.workflow_extended_info.time_skipping_info.CopyFrom(info)
        return response

    async def _rpc_signal_workflow_execution(self, req: SignalWorkflowExecutionRequest,
                                             _timeout: float | None
                                             ) -> SignalWorkflowExecutionResponse:
        await self._to_inbox(req.namespace, req.workflow_execution, "signal",
                             req.SerializeToString(), req.request_id)
        return SignalWorkflowExecutionResponse()

    async def _rpc_request_cancel_workflow_execution(
            self, req: RequestCancelWorkflowExecutionRequest, _timeout: float | None
    ) -> RequestCancelWorkflowExecutionResponse:
        await self._to_inbox(req.namespace, req.workflow_execution, "cancel",
                             req.SerializeToString(), req.request_id)
        return RequestCancelWorkflowExecutionResponse()

    async def _to_inbox(self, namespace: str, execution: WorkflowExecution, kind: str,
                        message: bytes, request_id: str) -> None:
        """Leave a message for a running run and wake it (a repeated request id is dropped)."""
        row = await self._running(namespace, execution.workflow_id, execution.run_id)
        await self.process.db_call(self.process.store.append_inbox, row.run_id, kind, message,
                                   request_id or None)
        self.process.wake_run(row.run_id)

    async def _rpc_terminate_workflow_execution(
            self, req: TerminateWorkflowExecutionRequest, _timeout: float | None
    ) -> TerminateWorkflowExecutionResponse:
        process = self.process
        execution = req.workflow_execution
        row = await self._running(req.namespace, execution.workflow_id, execution.run_id)
        details = req.details.SerializeToString() if req.HasField("details") else None

        def write() -> None:
            with process.store.engine.begin() as conn:
                terminate_in(process.store, conn, row.run_id, req.reason, req.identity, details)

        await process.db_call(write)
        closed = await process.db_call(process.store.get_run_by_id, row.run_id)
        if closed is not None and closed.close_event:
            process.notify_closed(row.run_id, closed.close_event)
        process.wake_run(row.run_id)
        return TerminateWorkflowExecutionResponse()

    # Queries ------------------------------------------------------------------------------------

    async def _live_driver(self, run_id: str, seconds: float) -> Any:
        """The driver of a run this process owns, once it has a live instance: a run just
        started or claimed here is not activated yet, and Temporal holds a query until the
        worker has the run rather than answer from an older state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            driver = self.process.drivers.get(run_id)
            ready = driver is not None and (driver.instance is not None or driver.closed
                                            or driver.task_failure is not None)
            if ready or loop.time() >= deadline:
                return driver
            await asyncio.sleep(0.01)

    async def _claimed_driver(self, namespace: str, row: Any, seconds: float) -> Any:
        """Wait for a worker to claim a run that has none: this process's live driver, or
        the run's row once it names another owner (which then answers)."""
        self.process.wake_dispatch()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            driver = await self._live_driver(row.run_id,
                                             max(0.0, min(0.25, deadline - loop.time())))
            if driver is not None and (driver.instance is not None or driver.closed
                                       or driver.task_failure is not None):
                return driver, row
            row = await self._run(namespace, row.workflow_id, row.run_id)
            if row.owner not in (None, self.process.executor_id) or row.status != RUNNING \
                    or loop.time() >= deadline:
                return self.process.drivers.get(row.run_id), row

    async def _rpc_query_workflow(self, req: QueryWorkflowRequest,
                                  timeout: float | None) -> QueryWorkflowResponse:
        row = await self._run(req.namespace, req.execution.workflow_id, req.execution.run_id)
        condition = req.query_reject_condition
        rejected = (
            (condition == QueryRejectCondition.QUERY_REJECT_CONDITION_NOT_OPEN
             and row.status != RUNNING)
            or (condition == QueryRejectCondition.QUERY_REJECT_CONDITION_NOT_COMPLETED_CLEANLY
                and row.status not in (RUNNING, S.WORKFLOW_EXECUTION_STATUS_COMPLETED))
        )
        if rejected:
            response = QueryWorkflowResponse()
            response.query_rejected.status = row.status
            return response
        job = WorkflowActivationJob()
        query = job.query_workflow
        query.query_id = str(uuid.uuid4())
        query.query_type = req.query.query_type
        query.arguments.extend(req.query.query_args.payloads)
        for key, value in req.query.header.fields.items():
            query.headers[key].CopyFrom(value)
        process = self.process
        driver = process.drivers.get(row.run_id)
        if row.status == RUNNING and row.owner in (process.executor_id, None) and \
                process.serves_workflows(row.task_queue):
            # Owned here, or waiting for a worker and one of this process's is about to take
            # it (just started, signals waiting in its inbox): answer from the live run once
            # it has caught up, not from a replay of an older state.
            wait = min(timeout or _QUERY_WAIT_S, _QUERY_WAIT_S)
            if row.owner is None:
                driver, row = await self._claimed_driver(req.namespace, row, wait)
            else:
                driver = await self._live_driver(row.run_id, wait)
        try:
            command = None
            if driver is not None and row.status == RUNNING and driver.instance is not None:
                command = await driver.query(job)
            elif row.status == RUNNING and row.owner and row.owner != process.executor_id:
                # Driven by another process: it answers from its live state.
                command = await process.ask_owner(row.run_id, row.owner, job,
                                                  min(timeout or _QUERY_WAIT_S, _QUERY_WAIT_S))
            if command is None and row.status != RUNNING and \
                    process.registration(row.task_queue, row.workflow_type) is None:
                # No worker of the run's task queue here: a process that has one answers from
                # the run's records, through the database, as for a running run.
                command = await self._ask_a_worker(row, job, timeout)
            if command is None:
                command = await replay_query(process, await self.reader.records(row), job)
        except LookupError as err:
            raise rpc_error(RPCStatusCode.FAILED_PRECONDITION, str(err)) from None
        answer = command.respond_to_query
        if answer.HasField("failed"):
            raise invalid_argument(answer.failed.message)
        return QueryWorkflowResponse(
            query_result=Payloads(payloads=[answer.succeeded.response]))

    async def _answer_from_records(self, run_id: str, job: WorkflowActivationJob
                                   ) -> WorkflowCommand:
        row = await self.process.db_call(self.process.store.get_run_by_id, run_id)
        if row is None:
            raise LookupError(f"run {run_id} not found")
        return await replay_query(self.process, await self.reader.records(row), job)

    async def _ask_a_worker(self, row: Any, job: WorkflowActivationJob,
                            timeout: float | None) -> WorkflowCommand | None:
        process = self.process
        seconds = min(timeout or _QUERY_WAIT_S, _QUERY_WAIT_S)
        worker = await process.db_call(process.store.process_serving, row.task_queue,
                                       int(process.lease_s * 1000), process.executor_id)
        if worker is None:
            return None
        command: WorkflowCommand | None = await process.ask_owner(row.run_id, worker, job, seconds)
        return command

    # Updates ----------------------------------------------------------------------------------

    async def _rpc_update_workflow_execution(self, req: UpdateWorkflowExecutionRequest,
                                             timeout: float | None
                                             ) -> UpdateWorkflowExecutionResponse:
        execution = req.workflow_execution
        row = await self._run(req.namespace, execution.workflow_id, execution.run_id)
        known = None
        if req.request.meta.update_id:
            known = await self.process.db_call(self.process.store.get_update, row.run_id,
                                               req.request.meta.update_id)
        if known is None:
            if row.status != RUNNING:
                raise not_found(f"workflow execution already completed: workflow "
                                f"{execution.workflow_id!r} run {row.run_id}")
            await self.process.db_call(_updates.admit, self.process, row.run_id, req)
        return await _updates.respond(self.process, row, req, timeout)

    async def _rpc_poll_workflow_execution_update(
            self, req: PollWorkflowExecutionUpdateRequest, timeout: float | None
    ) -> PollWorkflowExecutionUpdateResponse:
        ref = req.update_ref.workflow_execution
        row = await self._run(req.namespace, ref.workflow_id, ref.run_id)
        return await _updates.poll(self.process, row, req, timeout)

    async def _rpc_execute_multi_operation(self, req: ExecuteMultiOperationRequest,
                                           timeout: float | None
                                           ) -> ExecuteMultiOperationResponse:
        if len(req.operations) != 2 or not req.operations[0].HasField("start_workflow") or \
                not req.operations[1].HasField("update_workflow"):
            raise invalid_argument("dbosify supports the update-with-start multi-operation "
                                   "only (a start followed by an update)")
        start = req.operations[0].start_workflow
        update = req.operations[1].update_workflow
        self._validate_start(start)
        delay_to_first_cron_time(start)
        process = self.process
        local = process.serves_workflows(start.task_queue.name)

        def write() -> tuple[str, bool]:
            with process.store.engine.begin() as conn:
                started = start_run(process.store, start, owner=process.executor_id
                                    if local else None, conn=conn,
                                    build_id=process.start_build_id(
                                        start.task_queue.name, start.workflow_type.name)
                                    if local else None)
                known = process.store.get_update(started.run_id, update.request.meta.update_id) \
                    if update.request.meta.update_id else None
                if known is None:
                    _updates.admit(process, started.run_id, update, conn=conn)
                return started.run_id, started.created

        try:
            run_id, created = await process.db_call(write)
        except WorkflowAlreadyStarted as err:
            failure = MultiOperationExecutionFailure()
            status = failure.statuses.add(code=int(RPCStatusCode.ALREADY_EXISTS),
                                          message=str(err))
            detail = WorkflowExecutionAlreadyStartedFailure(run_id=err.run_id)
            status.details.add().Pack(detail)
            aborted = failure.statuses.add(code=int(RPCStatusCode.ABORTED),
                                           message="operation was aborted")
            aborted.details.add().Pack(MultiOperationExecutionAborted())
            raise rpc_error(RPCStatusCode.ALREADY_EXISTS, str(err), failure) from None
        if created and local:
            process.launch_local(run_id)
        process.wake_run(run_id)
        row = await process.db_call(process.store.get_run_by_id, run_id)
        response = ExecuteMultiOperationResponse()
        response.responses.add().start_workflow.CopyFrom(
            StartWorkflowExecutionResponse(run_id=run_id, started=created))
        response.responses.add().update_workflow.CopyFrom(
            await _updates.respond(process, row, update, timeout))
        return response

    # Visibility ---------------------------------------------------------------------------------

    async def _rpc_list_workflow_executions(self, req: ListWorkflowExecutionsRequest,
                                            _timeout: float | None
                                            ) -> ListWorkflowExecutionsResponse:
        return await _visibility_rpc.list_runs(self.process, req)

    async def _rpc_count_workflow_executions(self, req: CountWorkflowExecutionsRequest,
                                             _timeout: float | None
                                             ) -> CountWorkflowExecutionsResponse:
        return await _visibility_rpc.count_runs(self.process, req)

