"""What a run records durably: its workflow tasks and its activity attempts.

A run is one DBOS workflow. Every event the run's code observes after it starts is one DBOS step
of that workflow, whose output is a record below (as a plain dict, so DBOS's serializer and any
reader of the step table can handle it). The first workflow task (``InitializeWorkflow``) is not a
step: it is derived from the run's start request, stored in ``dbosify_runs``, and its completion is
an input of the run's DBOS workflow (written with the workflow, in its one commit). A history (§5)
and a replay are both built from these records, never from a second copy. This module sits below
both the engine, which writes the records, and :mod:`dbosify.history`, which reads them.

Format 2 (this one) stores each task with its own completion: the event and the commands the code
answered it with commit together, before any command is carried out. Format 1 stored the
completion of task *k* with task *k + 1*; its records are still read (:func:`task_completions`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import ContinueAsNewInitiator
from temporalio.api.failure.v1 import Failure
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

if TYPE_CHECKING:
    from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest

RECORD_FORMAT = 2
"""Version of the record layout below (each record carries it as ``v``). Readers handle every
earlier format, so runs in flight survive an upgrade; it is not part of DBOS's application
version (a new format must not strand the runs recorded in an older one)."""

EVENT_STEP = "dbosify.event"
"""Name of the DBOS step that records each event of a run: its output is
``{"records": [record, ...]}``, each record a dict from a ``to_record`` below."""

DEFAULT_WORKFLOW_TASK_TIMEOUT_S = 10
"""A run's workflow task timeout when its start request sets none (Temporal's default)."""


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

    ``completion``: the task's own completion (format 2), recorded with it; ``None`` when the
    activation failed (a workflow-task failure: the completion of its retry is a
    :class:`TaskCompleted` record). ``previous_completion``: format 1 only, the completion of the
    task before this one. ``activity_attempts`` maps each activity seq resolved in this
    activation to its final attempt.
    """

    activation: WorkflowActivation
    previous_completion: WorkflowActivationCompletion | None = None
    activity_attempts: Mapping[int, ActivityAttemptInfo] = field(default_factory=dict)
    identity: str = ""
    """The worker that recorded the task."""
    completion: WorkflowActivationCompletion | None = None

    def to_record(self) -> dict[str, Any]:
        """The plain dict stored as the step's output."""
        record: dict[str, Any] = {
            "kind": "task",
            "v": RECORD_FORMAT,
            "activation": _b64(self.activation.SerializeToString()),
        }
        if self.completion is not None:
            record["completion"] = _b64(self.completion.SerializeToString())
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


@dataclass(frozen=True)
class TaskCompleted:
    """The completion of workflow task ``task`` (numbered from 0, the ``InitializeWorkflow``
    one), recorded after the task itself: a task retried after a workflow-task failure, a first
    task that waited for a start delay, or the last task of a run recorded in format 1."""

    task: int
    completion: WorkflowActivationCompletion
    identity: str = ""

    def to_record(self) -> dict[str, Any]:
        """The plain dict stored as the step's output."""
        return {"kind": "completion", "v": RECORD_FORMAT, "task": self.task,
                "completion": _b64(self.completion.SerializeToString()),
                "identity": self.identity}


Record = WorkflowTask | ActivityAttemptFailed | TaskCompleted


def initial_activation(row: Any, req: StartWorkflowExecutionRequest) -> WorkflowActivation:
    """The run's first activation (``InitializeWorkflow``), derived from its start request so
    it needs no commit of its own."""
    activation = WorkflowActivation(run_id=row.run_id, history_length=3)
    activation.timestamp.FromMilliseconds(row.execution_time_ms)
    init = activation.jobs.add().initialize_workflow
    init.workflow_type = req.workflow_type.name
    init.workflow_id = req.workflow_id
    init.arguments.extend(req.input.payloads)
    # Stored signed in a BIGINT; Core's seed is the unsigned 64-bit value.
    init.randomness_seed = row.randomness_seed & 0xFFFF_FFFF_FFFF_FFFF
    for key, value in req.header.fields.items():
        init.headers[key].CopyFrom(value)
    init.identity = req.identity
    if row.parent_workflow_id:
        init.parent_workflow_info.namespace = row.namespace
        init.parent_workflow_info.workflow_id = row.parent_workflow_id
        init.parent_workflow_info.run_id = row.parent_run_id or ""
    if row.root_run_id:
        init.root_workflow.workflow_id = row.root_workflow_id
        init.root_workflow.run_id = row.root_run_id
    if req.HasField("workflow_execution_timeout"):
        init.workflow_execution_timeout.CopyFrom(req.workflow_execution_timeout)
    if req.HasField("workflow_run_timeout"):
        init.workflow_run_timeout.CopyFrom(req.workflow_run_timeout)
    if req.HasField("workflow_task_timeout"):
        init.workflow_task_timeout.CopyFrom(req.workflow_task_timeout)
    else:
        init.workflow_task_timeout.FromSeconds(DEFAULT_WORKFLOW_TASK_TIMEOUT_S)
    init.continued_from_execution_run_id = row.continued_from_run_id or ""
    if req.HasField("continued_failure"):
        init.continued_failure.CopyFrom(req.continued_failure)
        if row.attempt > 1:  # A retry of a failed run (its RetryPolicy).
            init.continued_initiator = ContinueAsNewInitiator.CONTINUE_AS_NEW_INITIATOR_RETRY
    if req.HasField("last_completion_result"):
        init.last_completion_result.CopyFrom(req.last_completion_result)
    init.first_execution_run_id = row.first_execution_run_id
    if req.HasField("retry_policy"):
        init.retry_policy.CopyFrom(req.retry_policy)
    init.attempt = row.attempt
    init.cron_schedule = req.cron_schedule
    if req.HasField("memo"):
        init.memo.CopyFrom(req.memo)
    if req.HasField("search_attributes"):
        init.search_attributes.CopyFrom(req.search_attributes)
    init.start_time.FromMilliseconds(row.start_time_ms)
    init.original_execution_run_id = row.run_id
    if req.HasField("priority"):
        init.priority.CopyFrom(req.priority)
    return activation


def encode_completion(completion: WorkflowActivationCompletion) -> str:
    """A completion as text (the first task's, an input of the run's DBOS workflow)."""
    return _b64(completion.SerializeToString())


def decode_completion(text: str) -> WorkflowActivationCompletion:
    """Inverse of :func:`encode_completion`."""
    return WorkflowActivationCompletion.FromString(_unb64(text))


def task_completions(records: Sequence[Record], first: WorkflowActivationCompletion | None = None
                     ) -> dict[int, WorkflowActivationCompletion]:
    """The recorded completion of each workflow task, by task number, from a run's records in
    order (task 0 is derived, so the first task record is task 1), whichever format wrote them.
    ``first``: the completion of task 0 when the run's DBOS workflow input holds it."""
    found: dict[int, WorkflowActivationCompletion] = {}
    if first is not None:
        found[0] = first
    task_no = 0
    for record in records:
        if isinstance(record, WorkflowTask):
            task_no += 1
            if record.previous_completion is not None:
                found[task_no - 1] = record.previous_completion
            if record.completion is not None:
                found[task_no] = record.completion
        elif isinstance(record, TaskCompleted):
            found[record.task] = record.completion
    return found


def with_previous_completions(tasks: Sequence[WorkflowTask],
                              completions: Mapping[int, WorkflowActivationCompletion]
                              ) -> tuple[list[WorkflowTask], WorkflowActivationCompletion | None]:
    """``tasks`` with each one's ``previous_completion`` set from ``completions`` (the shape the
    history builder reads), and the completion of the last task (``None`` while in flight)."""
    linked = [tasks[0]] if tasks else []
    for index in range(1, len(tasks)):
        linked.append(replace(tasks[index], previous_completion=completions.get(index - 1)))
    return linked, completions.get(len(tasks) - 1) if tasks else None


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
        own = WorkflowActivationCompletion.FromString(_unb64(data["completion"])) \
            if "completion" in data else None
        return WorkflowTask(activation, previous, attempts, data.get("identity", ""), own)
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
    if kind == "completion":
        return TaskCompleted(int(data["task"]), decode_completion(data["completion"]),
                             data.get("identity", ""))
    raise ValueError(f"not a dbosify run record (kind={kind!r}); was it written by a newer dbosify?")


@dataclass(frozen=True)
class CloseRecords:
    """What a run's close writes beside its close event (``dbosify_runs.close_records``).

    ``tasks``: the run's last workflow task when no DBOS step recorded it (with its completion,
    in format 2). A task whose code closes the run at once is recorded by the close alone: one
    commit where a step and a close take two, and the run's history is whole whichever of the
    close and the DBOS workflow's end a crash comes between. ``final_completion``: the
    completion that closed the run.
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
