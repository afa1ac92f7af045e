"""Reading a run's records back: its Temporal history, and a replayed instance for queries."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.bridge.proto.workflow_activation import WorkflowActivation, WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand

from dbosify._records import EVENT_STEP
from dbosify._runtime._commands import first_difference
from dbosify._runtime._instance import activate, create_instance
from dbosify._runtime._process import Process
from dbosify.history._run import RunRecords, run_records

logger = logging.getLogger("dbosify")
RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
_FINAL_WAIT_S = 2.0


class RecordReader:
    """Reads DBOS step outputs of runs, from any process (a client needs no launched DBOS)."""

    def __init__(self, process: Process) -> None:
        self.process = process

    def _read(self, run_id: str) -> tuple[list[dict[str, Any]], Any, bool, str | None]:
        client = self.process.dbos_client()
        try:
            steps = client.list_workflow_steps(run_id)
            status = client.retrieve_workflow(run_id).get_status()
        except Exception:
            # No DBOS workflow yet (no worker has taken the run), or no DBOS tables at all.
            return [], None, False, None
        outputs = [s["output"] for s in steps
                   if s["function_name"] == EVENT_STEP and s["output"] is not None]
        # The first activation's completion is the DBOS workflow's second argument (record
        # format 2; older runs have only the run id).
        args = status.input["args"] if isinstance(status.input, dict) else ()
        first = args[1] if len(args) > 1 and isinstance(args[1], str) else None
        return outputs, status.output, status.status == "PENDING", first

    async def records(self, row: Any) -> RunRecords:
        """The run's recorded tasks (task 0 derived from its start request)."""
        outputs, final, pending, first = await self.process.db_call(self._read, row.run_id)
        # Without close records (a run closed by a timeout or a terminate, or by an older
        # dbosify), the last completion is the DBOS workflow's output, written just after the
        # row is closed: a history read in between would miss it, so give it a moment.
        deadline = asyncio.get_running_loop().time() + _FINAL_WAIT_S
        while (not row.close_records and pending and row.status != RUNNING
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.02)
            outputs, final, pending, first = await self.process.db_call(self._read, row.run_id)
        return run_records(row, outputs, final, first)


async def replay_query(process: Process, records: RunRecords,
                       job: WorkflowActivationJob) -> WorkflowCommand:
    """Answer a query by replaying the recorded tasks on a fresh instance (a closed run, or one
    driven by another process: the answer reflects the last recorded event)."""
    row = records.row
    reg = process.registration(row.task_queue, row.workflow_type, getattr(row, "build_id", None))
    if reg is None:
        raise LookupError(
            f"no worker of task queue {row.task_queue!r} in this process knows workflow type "
            f"{row.workflow_type!r}, so the query cannot be answered here; run the query where "
            "such a worker runs")
    first = records.tasks[0].activation
    instance = create_instance(reg, first, first.jobs[0].initialize_workflow)
    completions = [t.previous_completion for t in records.tasks[1:]] + [records.final_completion]

    async def evict() -> None:
        done = WorkflowActivation(run_id=row.run_id)
        done.jobs.add().remove_from_cache.message = "query done"
        await asyncio.get_running_loop().run_in_executor(process.activation_executor,
                                                         instance.activate, done)

    flags: set[int] = set()
    for index, (task, recorded) in enumerate(zip(records.tasks, completions, strict=True)):
        activation = WorkflowActivation()
        activation.CopyFrom(task.activation)
        activation.is_replaying = True
        if recorded is not None:
            for command in recorded.successful.commands:
                if command.HasField("set_patch_marker"):
                    patch = WorkflowActivationJob()
                    patch.notify_has_patch.patch_id = command.set_patch_marker.patch_id
                    activation.jobs.insert(0, patch)
            flags.update(recorded.successful.used_internal_flags)
        activation.available_internal_flags[:] = sorted(flags)
        completion = await activate(instance, activation, process.activation_executor,
                                    reg.deadlock_timeout)
        if completion.HasField("failed"):
            await evict()
            raise LookupError(f"replaying the workflow for the query failed: "
                              f"{completion.failed.failure.message}")
        # As the driver does (DESIGN §4): the code must issue the recorded commands.
        diff = first_difference(recorded, completion) if recorded is not None else None
        if diff is not None:
            await evict()
            raise LookupError(
                f"nondeterminism in workflow {row.workflow_id!r} (type {row.workflow_type!r}, "
                f"run {row.run_id}) at event {index}: the history recorded {diff[0]} but the "
                f"workflow code now issues {diff[1]}; the query cannot be answered by this code")
    query = WorkflowActivation(run_id=row.run_id, jobs=[job], is_replaying=True)
    query.timestamp.CopyFrom(records.tasks[-1].activation.timestamp)
    completion = await activate(instance, query, process.activation_executor, reg.deadlock_timeout)
    await evict()
    for command in completion.successful.commands:
        if command.HasField("respond_to_query"):
            return command
    raise LookupError("the workflow did not answer the query")
