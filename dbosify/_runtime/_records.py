"""What a run records durably: its workflow tasks and its activity attempts.

A run is one DBOS workflow. Every event the run's code observes after it starts is one DBOS step
of that workflow, whose output is a record below (as a plain dict, so DBOS's serializer and any
reader of the step table can handle it). The first workflow task (``InitializeWorkflow``) is not a
step: it is derived from the run's start request, stored in ``dbosify_runs``. A history (§5) and a
replay are both built from these records, never from a second copy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.failure.v1 import Failure
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

RECORD_FORMAT = 1
"""Version of the record layout below; part of DBOS's application version for dbosify runs."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


@dataclass(frozen=True)
class ActivityAttemptInfo:
    """The attempt of an activity whose outcome a workflow task delivers."""

    attempt: int
    started_ms: int
    identity: str
    last_failure: Failure | None = None
    """How the attempt before this one failed (Temporal shows it on the started event)."""


@dataclass(frozen=True)
class WorkflowTask:
    """One activation the run's code was fed and the completion it answered with.

    ``previous_completion`` is the completion of the workflow task before this one: commands are
    stored with the next event rather than in a commit of their own (DESIGN §9.1), so the commands
    of a run's latest task are known only once the next event arrives, or from the close event.
    ``activity_attempts`` maps each activity seq resolved in this activation to its final attempt.
    """

    activation: WorkflowActivation
    previous_completion: WorkflowActivationCompletion | None = None
    activity_attempts: Mapping[int, ActivityAttemptInfo] = field(default_factory=dict)
    identity: str = ""
    """The worker that recorded the task (and completed the one before it)."""

    def to_record(self) -> dict[str, Any]:
        """The plain dict stored as the step's output."""
        record: dict[str, Any] = {
            "kind": "task",
            "v": RECORD_FORMAT,
            "activation": _b64(self.activation.SerializeToString()),
        }
        if self.previous_completion is not None:
            record["previous_completion"] = _b64(self.previous_completion.SerializeToString())
        if self.identity:
            record["identity"] = self.identity
        if self.activity_attempts:
            record["activity_attempts"] = {
                str(seq): [a.attempt, a.started_ms, a.identity]
                + ([_b64(a.last_failure.SerializeToString())] if a.last_failure else [])
                for seq, a in self.activity_attempts.items()
            }
        return record


@dataclass(frozen=True)
class ActivityAttemptFailed:
    """An activity attempt failed (or timed out) and will be retried at ``next_attempt_ms``.

    Not an event of the workflow's code: the engine records it so the attempt number and the
    backoff survive a crash (DESIGN §4.2). ``heartbeat_details`` are handed to the next attempt.
    """

    seq: int
    attempt: int
    started_ms: int
    failed_ms: int
    next_attempt_ms: int
    failure: Failure
    heartbeat_details: bytes = b""

    def to_record(self) -> dict[str, Any]:
        """The plain dict stored as the step's output."""
        return {
            "kind": "attempt_failed",
            "v": RECORD_FORMAT,
            "seq": self.seq,
            "attempt": self.attempt,
            "started_ms": self.started_ms,
            "failed_ms": self.failed_ms,
            "next_attempt_ms": self.next_attempt_ms,
            "failure": _b64(self.failure.SerializeToString()),
            "heartbeat_details": _b64(self.heartbeat_details),
        }


Record = WorkflowTask | ActivityAttemptFailed


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Rebuild a record from a step output written by :meth:`to_record`."""
    kind = data.get("kind")
    if kind == "task":
        activation = WorkflowActivation()
        activation.ParseFromString(_unb64(data["activation"]))
        previous: WorkflowActivationCompletion | None = None
        if "previous_completion" in data:
            previous = WorkflowActivationCompletion()
            previous.ParseFromString(_unb64(data["previous_completion"]))
        attempts = {
            int(seq): ActivityAttemptInfo(
                attempt=a[0], started_ms=a[1], identity=a[2],
                last_failure=Failure.FromString(_unb64(a[3])) if len(a) > 3 else None)
            for seq, a in data.get("activity_attempts", {}).items()
        }
        return WorkflowTask(activation, previous, attempts, data.get("identity", ""))
    if kind == "attempt_failed":
        failure = Failure()
        failure.ParseFromString(_unb64(data["failure"]))
        return ActivityAttemptFailed(
            seq=data["seq"],
            attempt=data["attempt"],
            started_ms=data["started_ms"],
            failed_ms=data["failed_ms"],
            next_attempt_ms=data["next_attempt_ms"],
            failure=failure,
            heartbeat_details=_unb64(data.get("heartbeat_details", "")),
        )
    raise ValueError(f"not a dbosify run record (kind={kind!r}); was it written by a newer dbosify?")


@dataclass(frozen=True)
class CloseRecords:
    """What a run's close writes beside its close event (``dbosify_runs.close_records``).

    ``tasks``: the run's last workflow task when no DBOS step recorded it. A task whose code
    closes the run at once is recorded by the close alone: one commit where a step and a close
    take two, and the run's history is whole whichever of the close and the DBOS workflow's end
    a crash comes between. ``final_completion``: the completion that closed the run.
    """

    tasks: list[WorkflowTask]
    final_completion: WorkflowActivationCompletion

    def to_json(self) -> str:
        """The text stored in the column."""
        return json.dumps({"v": RECORD_FORMAT,
                           "tasks": [task.to_record() for task in self.tasks],
                           "final_completion": _b64(self.final_completion.SerializeToString())})

    @staticmethod
    def from_json(text: str) -> CloseRecords:
        """Read what :meth:`to_json` wrote."""
        data = json.loads(text)
        tasks = [record_from_dict(r) for r in data.get("tasks", [])]
        final = WorkflowActivationCompletion()
        final.ParseFromString(_unb64(data["final_completion"]))
        return CloseRecords([t for t in tasks if isinstance(t, WorkflowTask)], final)
