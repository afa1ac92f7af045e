"""What the history builder remembers about each command while it walks a run's records.

Core keeps one state machine per command; the builder needs far less: the ids of the events a
later resolution refers back to, and whether the workflow asked to cancel the thing, because Core
answers some cancellations itself, inside the workflow task, with no event from the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.bridge.proto.child_workflow import ChildWorkflowCancellationType
from temporalio.bridge.proto.workflow_commands import ActivityCancellationType


@dataclass
class Activity:
    """An activity scheduled by the run."""

    scheduled_event_id: int
    cancellation_type: ActivityCancellationType.ValueType
    cancel_requested_event_id: int = 0
    cancel_requested: bool = False
    resolved: bool = False

    def resolves_on_cancel(self) -> bool:
        """Whether Core resolved this activity itself when the workflow cancelled it.

        It does unless the workflow waits for the cancellation to complete (then the resolution
        is the server's ACTIVITY_TASK_CANCELED, or whatever outcome won the race).
        """
        return self.cancel_requested and (
            self.cancellation_type != ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        )


@dataclass
class Timer:
    """A timer started by the run."""

    timer_id: str
    started_event_id: int
    done: bool = False


@dataclass
class Child:
    """A child workflow the run initiated."""

    namespace: str
    workflow_id: str
    workflow_type: str
    initiated_event_id: int
    workflow_task_completed_event_id: int
    cancellation_type: ChildWorkflowCancellationType.ValueType
    started_event_id: int = 0
    run_id: str = ""
    cancel_requested: bool = False
    cancel_initiated_event_id: int = 0
    resolved: bool = False

    def execution(self) -> WorkflowExecution:
        """The child's execution, with its run id once it started."""
        return WorkflowExecution(workflow_id=self.workflow_id, run_id=self.run_id)

    def resolves_on_cancel(self) -> bool:
        """Whether Core resolved this child itself when the workflow cancelled it."""
        return self.cancel_requested and self.cancellation_type in (
            ChildWorkflowCancellationType.ABANDON,
            ChildWorkflowCancellationType.TRY_CANCEL,
        )


@dataclass
class External:
    """A signal to, or a cancel request for, another workflow, sent by the run."""

    namespace: str
    execution: WorkflowExecution
    initiated_event_id: int
    workflow_task_completed_event_id: int
