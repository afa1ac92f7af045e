"""Translations between what is stored for a run and what its workflow code is fed."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Payloads, SearchAttributes
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.history.v1 import WorkflowExecutionSignaledEventAttributes
from temporalio.api.update.v1 import Request
from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
    UpdateWorkflowExecutionRequest,
)
from temporalio.bridge.proto.activity_result import ActivityExecutionResult
from temporalio.bridge.proto.activity_task import Start
from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob
from temporalio.bridge.proto.workflow_commands import WorkflowCommand

from dbosify._records import initial_activation as initial_activation  # Re-exported: it moved.
from dbosify._runtime._activities import AttemptOutcome
from dbosify._store._inbox import InboxEvent

if TYPE_CHECKING:
    from dbosify._runtime._process import Process

RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


def run_deadline_ms(req: StartWorkflowExecutionRequest, start_ms: int) -> int | None:
    """When the run times out: its run timeout, else its execution timeout."""
    for timeout in (req.workflow_run_timeout, req.workflow_execution_timeout):
        ms = int(timeout.ToMilliseconds())
        if ms > 0:
            return start_ms + ms
    return None


def job_from_inbox(event: InboxEvent) -> WorkflowActivationJob | None:
    """The activation job for a signal or cancel request written to a run's inbox."""
    job = WorkflowActivationJob()
    if event.kind == "signal":
        signal = SignalWorkflowExecutionRequest()
        signal.ParseFromString(event.payload)
        return signal_job(signal)
    if event.kind == "cancel":
        cancel = RequestCancelWorkflowExecutionRequest()
        cancel.ParseFromString(event.payload)
        job.cancel_workflow.reason = cancel.reason
        return job
    if event.kind == "update":
        update = UpdateWorkflowExecutionRequest()
        update.ParseFromString(event.payload)
        return update_job(update.request, update.request.meta.update_id, run_validator=True)
    return None


def signal_job(
    signal: SignalWorkflowExecutionRequest | WorkflowExecutionSignaledEventAttributes,
) -> WorkflowActivationJob:
    """The ``SignalWorkflow`` job for a signal, as sent (a live run's inbox) or as recorded (a
    history replayed)."""
    job = WorkflowActivationJob()
    job.signal_workflow.signal_name = signal.signal_name
    job.signal_workflow.input.extend(signal.input.payloads)
    job.signal_workflow.identity = signal.identity
    for key, value in signal.header.fields.items():
        job.signal_workflow.headers[key].CopyFrom(value)
    return job


def update_job(request: Request, protocol_instance_id: str, *,
               run_validator: bool) -> WorkflowActivationJob:
    """The ``DoUpdate`` job for an update request (its id is the request's, else the protocol
    instance's)."""
    job = WorkflowActivationJob()
    do = job.do_update
    do.id = request.meta.update_id or protocol_instance_id
    do.protocol_instance_id = protocol_instance_id
    do.name = request.input.name
    do.input.extend(request.input.args.payloads)
    for key, value in request.input.header.fields.items():
        do.headers[key].CopyFrom(value)
    do.meta.CopyFrom(request.meta)
    do.run_validator = run_validator
    return job


def _pack(**parts: bytes | int | str | None) -> bytes:
    return json.dumps({k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
                       for k, v in parts.items()}).encode()


def encode_remote_task(token: bytes, start: Start) -> bytes:
    """An activity attempt offered to the workers of another process."""
    return _pack(token=token, start=start.SerializeToString())


def decode_remote_task(payload: bytes) -> tuple[bytes, Start]:
    """Inverse of :func:`encode_remote_task`."""
    data = json.loads(payload)
    start = Start()
    start.ParseFromString(base64.b64decode(data["start"]))
    return base64.b64decode(data["token"]), start


def encode_remote_outcome(token: bytes, outcome: AttemptOutcome) -> bytes:
    """An attempt's outcome, written by the process that ran it to the run's inbox."""
    return _pack(token=token, result=outcome.result.SerializeToString(),
                 started_ms=outcome.started_ms,
                 heartbeat=outcome.heartbeat_details.SerializeToString(),
                 identity=outcome.identity)


def decode_remote_outcome(payload: bytes) -> tuple[bytes, AttemptOutcome]:
    """Inverse of :func:`encode_remote_outcome`."""
    data = json.loads(payload)
    result = ActivityExecutionResult()
    result.ParseFromString(base64.b64decode(data["result"]))
    details = Payloads()
    details.ParseFromString(base64.b64decode(data["heartbeat"]))
    return base64.b64decode(data["token"]), AttemptOutcome(result, data["started_ms"], details,
                                                           identity=data.get("identity", ""))


def search_attribute_rows(attrs: SearchAttributes) -> list[dict[str, Any]]:
    """Rows of ``dbosify_search_attributes`` for Temporal search attributes (typed payloads)."""
    rows: list[dict[str, Any]] = []
    for name, payload in attrs.indexed_fields.items():
        kind = payload.metadata.get("type", b"").decode() or "Keyword"
        if not payload.data:
            continue
        value = json.loads(payload.data)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if kind == "KeywordList" or isinstance(value, list):
            kind = "KeywordList" if kind in ("KeywordList", "Keyword") else kind
        for item in values:
            row: dict[str, Any] = {"name": name, "type": kind}
            if kind in ("Keyword", "Text", "KeywordList"):
                row["value_text"] = str(item)
            elif kind == "Int":
                row["value_int"] = int(item)
            elif kind == "Double":
                row["value_double"] = float(item)
            elif kind == "Bool":
                row["value_bool"] = bool(item)
            elif kind == "Datetime":
                when = datetime.fromisoformat(str(item).replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=timezone.utc)
                row["value_time_ms"] = int(when.timestamp() * 1000)
            else:
                row["value_text"] = str(item)
            rows.append(row)
    return rows


async def apply_visibility_command(process: Process, run_id: str,
                                   command: WorkflowCommand) -> None:
    """Carry a search-attribute or memo upsert into the visibility tables (idempotent, so
    replaying it is harmless)."""
    if command.HasField("upsert_workflow_search_attributes"):
        attrs = command.upsert_workflow_search_attributes.search_attributes
        await process.db_call(process.store.upsert_search_attributes, run_id,
                              list(attrs.indexed_fields), search_attribute_rows(attrs))
    elif command.HasField("modify_workflow_properties"):
        memo = command.modify_workflow_properties.upserted_memo
        await process.db_call(process.store.upsert_memo, run_id, memo)
