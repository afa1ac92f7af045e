"""A run as Temporal describes and lists it (``WorkflowExecutionInfo``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from temporalio.api.common.v1 import Memo, Payload, SearchAttributes, WorkerVersionStamp
from temporalio.api.enums.v1 import (
    PendingActivityState,
    PendingWorkflowTaskState,
    VersioningBehavior,
)
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionResponse,
    StartWorkflowExecutionRequest,
)

from dbosify._store._base import RUNNING
from dbosify.history._events import copy_set_fields

if TYPE_CHECKING:
    from dbosify._runtime._driver import RunDriver


def search_attributes_payloads(rows: Sequence[Any]) -> SearchAttributes:
    """Temporal's typed search-attribute payloads for a run's stored attribute rows."""
    values: dict[str, tuple[str, list[Any]]] = {}
    for row in rows:
        if row.type in ("Keyword", "Text", "KeywordList"):
            value: Any = row.value_text
        elif row.type == "Int":
            value = row.value_int
        elif row.type == "Double":
            value = row.value_double
        elif row.type == "Bool":
            value = bool(row.value_bool)
        else:
            value = datetime.fromtimestamp(row.value_time_ms / 1000, timezone.utc).isoformat()
        values.setdefault(row.name, (row.type, []))[1].append(value)
    attrs = SearchAttributes()
    for name, (kind, items) in values.items():
        data = items if kind == "KeywordList" else items[0]
        attrs.indexed_fields[name].CopyFrom(Payload(
            metadata={"encoding": b"json/plain", "type": kind.encode()},
            data=json.dumps(data).encode()))
    return attrs


def execution_info(row: Any, attribute_rows: Sequence[Any]) -> WorkflowExecutionInfo:
    """The visibility record of one run."""
    info = WorkflowExecutionInfo(status=row.status, history_length=row.history_length,
                                 first_run_id=row.first_execution_run_id)
    info.execution.workflow_id = row.workflow_id
    info.execution.run_id = row.run_id
    info.type.name = row.workflow_type
    info.task_queue = row.task_queue
    info.start_time.FromMilliseconds(row.start_time_ms)
    info.execution_time.FromMilliseconds(row.execution_time_ms)
    if row.close_time_ms is not None:
        info.close_time.FromMilliseconds(row.close_time_ms)
        info.execution_duration.FromMilliseconds(row.close_time_ms - row.execution_time_ms)
    if row.memo:
        memo = Memo()
        memo.ParseFromString(row.memo)
        info.memo.CopyFrom(memo)
    if attribute_rows:
        info.search_attributes.CopyFrom(search_attributes_payloads(attribute_rows))
    if row.parent_workflow_id:
        info.parent_execution.workflow_id = row.parent_workflow_id
        info.parent_execution.run_id = row.parent_run_id or ""
    build_id = getattr(row, "build_id", None)
    if build_id:
        # A run pinned to its worker version, as Temporal shows build-id versioning.
        info.assigned_build_id = build_id
        info.most_recent_worker_version_stamp.CopyFrom(
            WorkerVersionStamp(build_id=build_id, use_versioning=True))
        info.versioning_info.behavior = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED
    return info


def describe_run(row: Any, attribute_rows: Sequence[Any],
                 driver: RunDriver | None) -> DescribeWorkflowExecutionResponse:
    """``DescribeWorkflowExecution`` for one run; pending work comes from its live driver."""
    response = DescribeWorkflowExecutionResponse()
    response.workflow_execution_info.CopyFrom(execution_info(row, attribute_rows))
    req = StartWorkflowExecutionRequest()
    req.ParseFromString(row.start_request)
    config = response.execution_config
    config.task_queue.name = row.task_queue
    copy_set_fields(req, config,
                    ("workflow_execution_timeout", "workflow_run_timeout", "user_metadata"))
    if req.HasField("workflow_task_timeout"):
        config.default_workflow_task_timeout.CopyFrom(req.workflow_task_timeout)
    if row.status != RUNNING:
        return response
    if driver is not None:
        response.workflow_execution_info.history_length = driver.history_length
    if driver is None or driver.task_failure is not None:
        # No worker has taken the run, or its code failed: its workflow task is pending,
        # as Temporal shows a run waiting for a worker of its task queue.
        pending = response.pending_workflow_task
        pending.state = PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
        pending.scheduled_time.FromMilliseconds(row.start_time_ms)
        pending.original_scheduled_time.FromMilliseconds(row.start_time_ms)
        return response
    for act in driver.activities.values():
        if act.resolved:
            continue
        info = response.pending_activities.add()
        info.activity_id = act.command.activity_id
        info.activity_type.name = act.command.activity_type
        running = act.task is not None or act.remote_since_ms is not None
        info.state = (PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
                      if act.cancel_requested else
                      PendingActivityState.PENDING_ACTIVITY_STATE_STARTED if running else
                      PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED)
        info.attempt = act.attempt
        if act.heartbeat_details.payloads:
            info.heartbeat_details.CopyFrom(act.heartbeat_details)
        info.scheduled_time.FromMilliseconds(act.next_attempt_ms or act.scheduled_ms)
    for child in driver.children.values():
        if child.resolved or not child.started:
            continue
        pending_child = response.pending_children.add()
        pending_child.workflow_id = child.command.workflow_id
        pending_child.run_id = child.run_id
        pending_child.workflow_type_name = child.command.workflow_type
        # Core's enum numbers its values as the API's.
        pending_child.parent_close_policy = child.command.parent_close_policy  # type: ignore[assignment]
    return response
