"""Workflow updates: admitting them to a run and reporting their stage and outcome."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import UpdateWorkflowExecutionLifecycleStage as Stage
from temporalio.api.update.v1 import Outcome
from temporalio.api.workflowservice.v1 import (
    PollWorkflowExecutionUpdateRequest,
    PollWorkflowExecutionUpdateResponse,
    UpdateWorkflowExecutionRequest,
    UpdateWorkflowExecutionResponse,
)

from dbosify._service._errors import not_found

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

_ADMIT_WAIT_S = 10.0
"""How long an update call waits to be accepted before answering ADMITTED; temporalio's client
then sends it again (same update id, so it is not admitted twice)."""
_OUTCOME_WAIT_S = 20.0


def _wanted(policy_stage: int) -> int:
    # Temporal's default wait stage for an update call is ACCEPTED.
    return policy_stage if policy_stage >= Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED \
        else Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ACCEPTED


async def wait_for_stage(process: Process, run_id: str, update_id: str, wanted: int,
                         seconds: float) -> tuple[int, Outcome | None]:
    """Wait until the update reaches ``wanted`` (or has an outcome); return (stage, outcome)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        future = process.wait_update(run_id, update_id)
        try:
            state = await process.db_call(process.store.get_update, run_id, update_id)
            if state is not None:
                stage, data = state
                outcome = None
                if data:
                    outcome = Outcome()
                    outcome.ParseFromString(data)
                if stage >= wanted or outcome is not None:
                    return stage, outcome
            left = deadline - loop.time()
            if left <= 0:
                return (state[0] if state else Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED,
                        None)
            run = await process.db_call(process.store.get_run_by_id, run_id)
            if run is None or run.status != 1:
                # The update may have finished in the run's last task: its outcome is stored
                # before the close, so look once more before saying it never got in.
                state = await process.db_call(process.store.get_update, run_id, update_id)
                if state is not None and state[1]:
                    done = Outcome()
                    done.ParseFromString(state[1])
                    return state[0], done
                if state is not None and state[0] >= wanted:
                    return state[0], None
                raise not_found(f"workflow execution already completed: run {run_id} closed "
                                f"before update {update_id!r} was accepted")
            try:
                await asyncio.wait_for(asyncio.shield(future),
                                       min(left, process.poll_interval * 5))
            except asyncio.TimeoutError:
                pass
        finally:
            process.forget_update_waiter(run_id, update_id, future)


def admit(process: Process, run_id: str, req: UpdateWorkflowExecutionRequest,
          conn: Any = None) -> str:
    """Write the update to the run's inbox (once per update id); returns the update id."""
    if not req.request.meta.update_id:
        req.request.meta.update_id = str(uuid.uuid4())
    update_id = req.request.meta.update_id
    process.store.append_inbox(run_id, "update", req.SerializeToString(),
                               f"update:{update_id}", conn=conn)
    return update_id


async def respond(process: Process, row: Any, req: UpdateWorkflowExecutionRequest,
                  timeout: float | None) -> UpdateWorkflowExecutionResponse:
    """Wait for the admitted update per the request's wait policy and describe where it is."""
    update_id = req.request.meta.update_id
    process.wake_run(row.run_id)
    stage, outcome = await wait_for_stage(process, row.run_id, update_id,
                                          _wanted(req.wait_policy.lifecycle_stage),
                                          min(timeout or _ADMIT_WAIT_S, _ADMIT_WAIT_S))
    response = UpdateWorkflowExecutionResponse(stage=Stage.ValueType(stage))
    response.update_ref.update_id = update_id
    response.update_ref.workflow_execution.workflow_id = row.workflow_id
    response.update_ref.workflow_execution.run_id = row.run_id
    if outcome is not None:
        response.outcome.CopyFrom(outcome)
        response.stage = Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED
    return response


async def poll(process: Process, row: Any, req: PollWorkflowExecutionUpdateRequest,
               timeout: float | None) -> PollWorkflowExecutionUpdateResponse:
    """``PollWorkflowExecutionUpdate``: wait for the outcome (capped, then polled again)."""
    update_id = req.update_ref.update_id
    known = await process.db_call(process.store.get_update, row.run_id, update_id)
    if known is None and row.status != 1:
        raise not_found(f"update {update_id!r} not found for run {row.run_id}")
    stage, outcome = await wait_for_stage(
        process, row.run_id, update_id,
        Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED,
        min(timeout or _OUTCOME_WAIT_S, _OUTCOME_WAIT_S))
    response = PollWorkflowExecutionUpdateResponse(stage=Stage.ValueType(stage))
    response.update_ref.CopyFrom(req.update_ref)
    response.update_ref.workflow_execution.run_id = row.run_id
    if outcome is not None:
        response.outcome.CopyFrom(outcome)
        response.stage = Stage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED
    return response
