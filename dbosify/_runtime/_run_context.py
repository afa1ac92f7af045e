"""What the parts of a run see of it (:class:`~dbosify._runtime._driver.RunDriver`).

A run owns its parts (activities, local activities, children, messages), each with its own state;
they share nothing with each other but this: the run they belong to, and the jobs they hand it
for its next activation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob

    from dbosify._runtime._process import Process
    from dbosify._runtime._run_clock import RunClock


class RunContext(Protocol):
    """The run a part belongs to. ``process``, ``run_id`` and ``wake`` are fixed for the run's
    life (parts may keep them); the rest is read when needed."""

    process: Process
    run_id: str
    wake: asyncio.Event
    """Set to make the run look for its next event."""
    row: Any
    """The run's ``dbosify_runs`` row (None until the run has read it)."""
    recovering: bool
    """The run was recovered after a crash (not created by this process)."""
    closed: bool
    task_failure: str | None
    """Why the run's last workflow task failed, while it waits to be retried."""
    history_length: int
    clock: RunClock | None
    """The run's own virtual clock (per-workflow time skipping); None for most runs."""
    pending_jobs: list[WorkflowActivationJob]
    """Jobs the parts handed in for the run's next activation, in order."""

    def clock_ms(self) -> int:
        """Now on the run's clock: engine time, plus what the run has skipped (per-workflow
        time skipping); the run's own timeouts count on it."""

    def deliver(self, job: WorkflowActivationJob) -> None:
        """Hand ``job`` to the run's next activation, and wake the run."""
