"""The per-workflow time-skipping RPCs (temporalio's ``TimeSkipper``, ``start_time_skipping_v2``):
``UpdateWorkflowExecutionOptions`` with ``time_skipping_config``, and
``PollWorkflowExecutionTimeSkipping``. The run's clock itself is :mod:`dbosify._runtime._run_clock`;
a run driven in this process takes a new config on its own loop (it owns its clock), any other
has it written to its row for whoever drives it next.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import TimeSkippingConfig, TimeSkippingInfo
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.enums.v1.time_skipping_pb2 import FastForwardPollingResult
from temporalio.api.workflowservice.v1 import (
    PollWorkflowExecutionTimeSkippingRequest,
    PollWorkflowExecutionTimeSkippingResponse,
    UpdateWorkflowExecutionOptionsRequest,
    UpdateWorkflowExecutionOptionsResponse,
)

from dbosify._runtime._run_clock import RunClock
from dbosify._service._errors import invalid_argument
from dbosify._store._base import now_ms

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
R = FastForwardPollingResult
_LONG_POLL_S = 20.0
_POLL_S = 0.02
"""How often a fast-forward poll looks at the run (its clock moves in moments)."""
_DRIVER_WAIT_S = 5.0
"""How long a config waits for the driver of a run just started here."""


def clock_of(row: Any, driver: Any) -> RunClock | None:
    """A run's clock: its live driver's, else as stored (or as its start request asks)."""
    if driver is not None and not driver.closed and driver.tasks:
        clock: RunClock | None = driver.clock
        return clock
    stored = getattr(row, "time_skipping", None)
    return RunClock.from_json(stored) if stored else None


def time_skipping_info(row: Any, driver: Any) -> TimeSkippingInfo | None:
    """``TimeSkippingInfo`` of a run whose time skipping was ever enabled, else None."""
    clock = clock_of(row, driver)
    if clock is None or not clock.ever_enabled:
        return None
    if row.status != RUNNING and row.close_time_ms is not None:
        current = int(row.close_time_ms)  # Written on the run's clock.
    else:
        current = clock.now_ms(now_ms())
    return clock.info(current)


class TimeSkippingService:
    """The time-skipping RPCs of :class:`dbosify._service._service.DatabaseService`."""

    process: Process

    async def _run(self, namespace: str, workflow_id: str, run_id: str = "") -> Any: ...

    async def _running(self, namespace: str, workflow_id: str, run_id: str = "") -> Any: ...

    async def _rpc_update_workflow_execution_options(
            self, req: UpdateWorkflowExecutionOptionsRequest, _timeout: float | None
    ) -> UpdateWorkflowExecutionOptionsResponse:
        paths = list(req.update_mask.paths)
        if paths != ["time_skipping_config"]:
            raise invalid_argument(
                f"dbosify updates only time_skipping_config of a workflow's options "
                f"(update_mask {paths})")
        execution = req.workflow_execution
        row = await self._running(req.namespace, execution.workflow_id, execution.run_id)
        config = req.workflow_execution_options.time_skipping_config
        if config.HasField("fast_forward_config") and not config.enabled:
            raise invalid_argument("fast_forward_config cannot be set when enabled is false")
        driver = await self._driver_of(row)
        clock: RunClock | None = None
        if driver is not None:
            applied = driver.update_time_skipping(config)
            while clock is None:
                try:
                    clock = await asyncio.wait_for(
                        asyncio.shield(asyncio.wrap_future(applied)), 0.25)
                except asyncio.TimeoutError:
                    if driver.closed or self.process.drivers.get(row.run_id) is not driver:
                        # Closed (or let go) before its loop took the config.
                        applied.cancel()
                        row = await self._running(req.namespace, execution.workflow_id,
                                                  row.run_id)
                        break
        if clock is None:
            clock = await self.process.db_call(self._store_config, row.run_id, config)
        assert clock is not None
        response = UpdateWorkflowExecutionOptionsResponse()
        options = response.workflow_execution_options
        options.time_skipping_config.CopyFrom(_effective(clock))
        response.update_time.FromMilliseconds(now_ms())
        return response

    async def _driver_of(self, row: Any) -> Any:
        """The live driver of the run in this process, waiting for one being created here."""
        process = self.process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DRIVER_WAIT_S
        while True:
            driver = process.drivers.get(row.run_id)
            if driver is not None and not driver.closed and driver.tasks:
                return driver
            coming = row.run_id in process.fresh_runs or row.run_id in process.drivers or \
                (row.owner == process.executor_id and process.serves_workflows(row.task_queue))
            if not coming or loop.time() >= deadline:
                return None
            await asyncio.sleep(0.005)

    def _store_config(self, run_id: str, config: TimeSkippingConfig) -> RunClock:
        """A new config for a run no driver here holds: read, apply and write its clock."""
        store = self.process.store
        row = store.get_run_by_id(run_id)
        clock = (RunClock.of_run(row, None, now_ms()) if row is not None else None) or \
            RunClock()
        clock.apply(config, now_ms())
        store.update_run(run_id, time_skipping=clock.to_json())
        return clock

    async def _rpc_poll_workflow_execution_time_skipping(
            self, req: PollWorkflowExecutionTimeSkippingRequest, timeout: float | None
    ) -> PollWorkflowExecutionTimeSkippingResponse:
        """Until the fast-forward ``fast_forward_id`` completes (or fails: the workflow closed
        first, or a later config replaced it), capped as a Temporal long poll."""
        execution = req.workflow_execution
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout or _LONG_POLL_S, _LONG_POLL_S)
        response = PollWorkflowExecutionTimeSkippingResponse()
        while True:
            # run_id "": the workflow's current run, so the poll follows its chain.
            row = await self._run(req.namespace, execution.workflow_id, execution.run_id)
            clock = clock_of(row, self.process.drivers.get(row.run_id))
            if clock is not None and clock.ff_id == req.fast_forward_id:
                info = clock.info(clock.now_ms(now_ms())).fast_forward_info
                response.fast_forward_info.CopyFrom(info)
                if clock.ff_completed:
                    response.fast_forward_polling_result = \
                        R.FAST_FORWARD_POLLING_RESULT_FAST_FORWARD_COMPLETED
                    return response
            elif clock is not None and clock.ff_id:
                response.fast_forward_polling_result = \
                    R.FAST_FORWARD_POLLING_RESULT_FAST_FORWARD_FAILED
                response.failed_reason = (
                    f"fast_forward_id does not match: the workflow's fast-forward is "
                    f"{clock.ff_id!r}")
                return response
            if row.status != RUNNING:
                response.fast_forward_polling_result = \
                    R.FAST_FORWARD_POLLING_RESULT_FAST_FORWARD_FAILED
                response.failed_reason = "the workflow closed before the fast-forward completed"
                return response
            if clock is None or not clock.ff_id:
                response.fast_forward_polling_result = \
                    R.FAST_FORWARD_POLLING_RESULT_FAST_FORWARD_FAILED
                response.failed_reason = (f"the workflow has no fast-forward "
                                          f"{req.fast_forward_id!r}")
                return response
            if loop.time() >= deadline:
                response.fast_forward_polling_result = \
                    R.FAST_FORWARD_POLLING_RESULT_POLL_TIMEOUT
                return response
            await asyncio.sleep(_POLL_S)


def _effective(clock: RunClock) -> TimeSkippingConfig:
    effective = TimeSkippingConfig()
    effective.CopyFrom(clock.info(0).effective_config)
    return effective
