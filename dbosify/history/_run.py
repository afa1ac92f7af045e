"""A run's stored records put together: its workflow tasks, their completions, its history.

A run's records live in two places (DESIGN §4): its row in ``dbosify_runs`` (start request, close
event, close records) and the outputs of its DBOS workflow's event steps. Whoever reads them (the
service through DBOS's client, ``dbosify show`` straight from DBOS's tables) hands them to
:func:`run_records`, so both build the very same tasks and history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._records import (
    CloseRecords,
    Record,
    WorkflowTask,
    decode_completion,
    initial_activation,
    record_from_dict,
    task_completions,
    with_previous_completions,
)
from dbosify.history._build import build_history


@dataclass
class RunRecords:
    """Everything recorded for one run."""

    row: Any
    start_request: StartWorkflowExecutionRequest
    tasks: list[WorkflowTask]
    final_completion: WorkflowActivationCompletion | None

    def history(self, identity: str) -> list[HistoryEvent]:
        """The run's Temporal history (``identity``: the worker named where a record names
        none)."""
        close: HistoryEvent | None = None
        if self.row.close_event:
            close = HistoryEvent()
            close.ParseFromString(self.row.close_event)
        return build_history(
            run_id=self.row.run_id,
            start_request=self.start_request,
            start_time_ms=self.row.start_time_ms,
            first_execution_run_id=self.row.first_execution_run_id,
            tasks=self.tasks,
            final_completion=self.final_completion,
            close_event=close,
            attempt=self.row.attempt,
            continued_from_run_id=self.row.continued_from_run_id,
            identity=identity,
            parent_workflow_id=self.row.parent_workflow_id,
            parent_run_id=self.row.parent_run_id,
            build_id=getattr(self.row, "build_id", None),
        )


def run_records(row: Any, step_outputs: Sequence[Mapping[str, Any]], workflow_output: Any,
                first_completion: str | None) -> RunRecords:
    """A run's records from its ``dbosify_runs`` row and what its DBOS workflow holds.

    ``step_outputs``: the outputs of its event steps in order; ``workflow_output``: the DBOS
    workflow's output (``None`` while it runs); ``first_completion``: the completion of the first
    task, the DBOS workflow's second argument (record format 2; ``None`` for older runs).
    """
    req = StartWorkflowExecutionRequest()
    req.ParseFromString(row.start_request)
    closed = CloseRecords.from_json(row.close_records) if row.close_records else None
    records: list[Record] = [record_from_dict(data) for output in step_outputs
                             for data in output.get("records", [])]
    if closed is not None:
        records.extend(closed.tasks)
    first = decode_completion(first_completion) if first_completion else None
    completions = task_completions(records, first)
    tasks, final_completion = with_previous_completions(
        [WorkflowTask(initial_activation(row, req))]
        + [r for r in records if isinstance(r, WorkflowTask)], completions)
    if closed is not None:
        final_completion = closed.final_completion
    elif isinstance(workflow_output, dict) and workflow_output.get("previous_completion"):
        # Format 1: a run closed by the engine left its last completion in the output.
        final_completion = record_from_dict(workflow_output).previous_completion  # type: ignore[union-attr]
    return RunRecords(row, req, tasks, final_completion)
