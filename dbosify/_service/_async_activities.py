"""Activities completed from outside: Temporal's async activity completion RPCs.

An activity that calls ``activity.raise_complete_async()`` leaves its attempt open; whoever holds
its task token (``activity.info().task_token``) or its ids completes it later through
``client.get_async_activity_handle(...)``: ``heartbeat``, ``complete``, ``fail`` or
``report_cancellation``, from this process or any other on the same database. The engine keeps
such an attempt as a held task (``Store.hold_async_activity``); each RPC here finds it, and an
outcome is written to the run's inbox exactly as the outcome of an attempt another process ran,
so the run resolves (or retries, after ``fail``) the activity as Temporal's server does.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import (
    RecordActivityTaskHeartbeatByIdRequest,
    RecordActivityTaskHeartbeatByIdResponse,
    RecordActivityTaskHeartbeatRequest,
    RecordActivityTaskHeartbeatResponse,
    RespondActivityTaskCanceledByIdRequest,
    RespondActivityTaskCanceledByIdResponse,
    RespondActivityTaskCanceledRequest,
    RespondActivityTaskCanceledResponse,
    RespondActivityTaskCompletedByIdRequest,
    RespondActivityTaskCompletedByIdResponse,
    RespondActivityTaskCompletedRequest,
    RespondActivityTaskCompletedResponse,
    RespondActivityTaskFailedByIdRequest,
    RespondActivityTaskFailedByIdResponse,
    RespondActivityTaskFailedRequest,
    RespondActivityTaskFailedResponse,
)
from temporalio.bridge.proto.activity_result import ActivityExecutionResult

from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import AttemptOutcome
from dbosify._service._errors import invalid_argument, not_found

if TYPE_CHECKING:
    from dbosify._runtime._process import Process
    from dbosify._store._activity_tasks import AsyncActivity

_Ref = tuple[str, "AsyncActivity"]
"""A run id and its held attempt."""
_HOLD_WAIT_S = 5.0
"""How long a call waits for a running attempt to raise ``raise_complete_async()``."""
_RUNNING = 1


class AsyncActivityService:
    """The async-completion RPCs of :class:`dbosify._service._service.DatabaseService`."""

    process: Process

    async def _run(self, namespace: str, workflow_id: str, run_id: str = "") -> Any: ...

    # Finding the attempt ----------------------------------------------------------------------

    async def _by_token(self, token: bytes) -> _Ref:
        try:
            run_id, seq, attempt = token.decode().split("/")
            ref = (run_id, int(seq), int(attempt))
        except ValueError:
            raise invalid_argument(
                "not a dbosify activity task token: pass activity.info().task_token of the "
                "activity, unchanged") from None
        held = await self._held(ref[0], seq=ref[1], attempt=ref[2])
        return self._found(run_id, held, f"task token {token.decode()!r}")

    async def _by_id(self, namespace: str, workflow_id: str, run_id: str,
                     activity_id: str) -> _Ref:
        row = await self._run(namespace, workflow_id, run_id)
        held = await self._held(row.run_id, activity_id=activity_id)
        return self._found(row.run_id, held, f"workflow {workflow_id!r} activity {activity_id!r}")

    async def _held(self, run_id: str, *, seq: int | None = None, attempt: int | None = None,
                    activity_id: str | None = None) -> AsyncActivity | None:
        """The held attempt; waits for it while the attempt still runs, since the token is
        handed out before the activity raises ``raise_complete_async()`` (on Temporal the
        attempt is open from its start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _HOLD_WAIT_S
        while True:
            held = await self.process.db_call(lambda: self.process.store.async_activity(
                run_id, seq=seq, attempt=attempt, activity_id=activity_id))
            if held is not None or loop.time() >= deadline:
                return held
            driver = self.process.drivers.get(run_id)
            if driver is not None and not any(
                    not act.resolved and (seq is None or act.seq == seq)
                    and (attempt is None or act.attempt == attempt)
                    and (activity_id is None or act.command.activity_id == activity_id)
                    for act in driver.activities.values()):
                return None  # Driven here and no such attempt is open: it is gone.
            if driver is None:
                row = await self.process.db_call(self.process.store.get_run_by_id, run_id)
                if row is None or row.status != _RUNNING:
                    return None
            await asyncio.sleep(0.02)

    @staticmethod
    def _found(run_id: str, held: AsyncActivity | None, what: str) -> _Ref:
        if held is None:
            raise not_found(f"activity not found ({what}): it was completed, failed or "
                            "cancelled already, its workflow closed, or it never called "
                            "activity.raise_complete_async()")
        return run_id, held

    # Outcomes ---------------------------------------------------------------------------------

    async def _finish(self, ref: _Ref, result: ActivityExecutionResult, identity: str,
                      details: Payloads | None = None) -> None:
        run_id, held = ref
        token = f"{run_id}/{held.seq}/{held.attempt}"
        # started_ms 0: the run keeps the attempt's own start.
        outcome = AttemptOutcome(result, 0, details or Payloads(), identity=identity)
        # Keyed apart from the attempt's own outcome (which said "will complete async").
        await self.process.db_call(self.process.store.finish_activity_task, held.task_id, run_id,
                                   rs.encode_remote_outcome(token.encode(), outcome),
                                   f"async:{token}")
        self.process.wake_run(run_id)

    async def _heartbeat(self, ref: _Ref, details: Payloads) -> bool:
        run_id, held = ref
        reason = await self.process.db_call(self.process.store.beat_async_activity,
                                            held.task_id, run_id, held.seq,
                                            details.SerializeToString())
        if reason == 0:
            raise not_found("activity not found: its workflow closed or it was completed")
        return reason is not None

    @staticmethod
    def _completed(payloads: Payloads) -> ActivityExecutionResult:
        result = ActivityExecutionResult()
        if payloads.payloads:
            result.completed.result.CopyFrom(payloads.payloads[0])
        else:
            result.completed.SetInParent()
        return result

    @staticmethod
    def _failed(failure: Failure) -> ActivityExecutionResult:
        result = ActivityExecutionResult()
        result.failed.failure.CopyFrom(failure)
        return result

    @staticmethod
    def _cancelled(details: Payloads) -> ActivityExecutionResult:
        result = ActivityExecutionResult()
        failure = result.cancelled.failure
        failure.message = "Activity cancelled"
        failure.canceled_failure_info.details.CopyFrom(details)
        return result

    # RPCs -------------------------------------------------------------------------------------

    async def _rpc_record_activity_task_heartbeat(
            self, req: RecordActivityTaskHeartbeatRequest, _timeout: float | None
    ) -> RecordActivityTaskHeartbeatResponse:
        cancel = await self._heartbeat(await self._by_token(req.task_token), req.details)
        return RecordActivityTaskHeartbeatResponse(cancel_requested=cancel)

    async def _rpc_record_activity_task_heartbeat_by_id(
            self, req: RecordActivityTaskHeartbeatByIdRequest, _timeout: float | None
    ) -> RecordActivityTaskHeartbeatByIdResponse:
        ref = await self._by_id(req.namespace, req.workflow_id, req.run_id, req.activity_id)
        return RecordActivityTaskHeartbeatByIdResponse(
            cancel_requested=await self._heartbeat(ref, req.details))

    async def _rpc_respond_activity_task_completed(
            self, req: RespondActivityTaskCompletedRequest, _timeout: float | None
    ) -> RespondActivityTaskCompletedResponse:
        await self._finish(await self._by_token(req.task_token), self._completed(req.result),
                           req.identity)
        return RespondActivityTaskCompletedResponse()

    async def _rpc_respond_activity_task_completed_by_id(
            self, req: RespondActivityTaskCompletedByIdRequest, _timeout: float | None
    ) -> RespondActivityTaskCompletedByIdResponse:
        ref = await self._by_id(req.namespace, req.workflow_id, req.run_id, req.activity_id)
        await self._finish(ref, self._completed(req.result), req.identity)
        return RespondActivityTaskCompletedByIdResponse()

    async def _rpc_respond_activity_task_failed(
            self, req: RespondActivityTaskFailedRequest, _timeout: float | None
    ) -> RespondActivityTaskFailedResponse:
        await self._finish(await self._by_token(req.task_token), self._failed(req.failure),
                           req.identity, req.last_heartbeat_details)
        return RespondActivityTaskFailedResponse()

    async def _rpc_respond_activity_task_failed_by_id(
            self, req: RespondActivityTaskFailedByIdRequest, _timeout: float | None
    ) -> RespondActivityTaskFailedByIdResponse:
        ref = await self._by_id(req.namespace, req.workflow_id, req.run_id, req.activity_id)
        await self._finish(ref, self._failed(req.failure), req.identity,
                           req.last_heartbeat_details)
        return RespondActivityTaskFailedByIdResponse()

    async def _rpc_respond_activity_task_canceled(
            self, req: RespondActivityTaskCanceledRequest, _timeout: float | None
    ) -> RespondActivityTaskCanceledResponse:
        await self._finish(await self._by_token(req.task_token), self._cancelled(req.details),
                           req.identity)
        return RespondActivityTaskCanceledResponse()

    async def _rpc_respond_activity_task_canceled_by_id(
            self, req: RespondActivityTaskCanceledByIdRequest, _timeout: float | None
    ) -> RespondActivityTaskCanceledByIdResponse:
        ref = await self._by_id(req.namespace, req.workflow_id, req.run_id, req.activity_id)
        await self._finish(ref, self._cancelled(req.details), req.identity)
        return RespondActivityTaskCanceledByIdResponse()
