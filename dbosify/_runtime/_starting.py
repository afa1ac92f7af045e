"""Creating runs: Temporal's workflow-id reuse and conflict policies, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from temporalio.api.enums.v1 import (
    EventType,
    WorkflowExecutionStatus,
    WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    RequestCancelWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.bridge.proto.child_workflow import ParentClosePolicy

from dbosify._runtime._child_close import notify_parent_of
from dbosify._runtime._run_state import search_attribute_rows
from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, now_ms
from dbosify._store._store import Store
from dbosify.history._seed import core_randomness_seed

S = WorkflowExecutionStatus
_FAILED_LIKE = {S.WORKFLOW_EXECUTION_STATUS_FAILED, S.WORKFLOW_EXECUTION_STATUS_CANCELED,
                S.WORKFLOW_EXECUTION_STATUS_TERMINATED, S.WORKFLOW_EXECUTION_STATUS_TIMED_OUT}


class WorkflowAlreadyStarted(Exception):
    """A start was refused by the workflow id policies; ``run_id`` is the run in the way."""

    def __init__(self, workflow_id: str, workflow_type: str, run_id: str) -> None:
        super().__init__(f"workflow execution already started: workflow id {workflow_id!r}")
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        self.run_id = run_id


@dataclass(frozen=True)
class Lineage:
    """Where a child run stands in its tree: its parent, and the tree's root (Temporal's
    ``root_workflow_execution``: the first run without a parent)."""

    parent_workflow_id: str
    parent_run_id: str
    root_workflow_id: str
    root_run_id: str
    close_policy: int | None
    """The child's ``ParentClosePolicy`` (None: recorded before schema version 4)."""

    @staticmethod
    def of_child_of(parent: Any, close_policy: int) -> Lineage:
        """The lineage of a child whose parent run has the ``dbosify_runs`` row ``parent``."""
        if parent.root_run_id:
            root = (parent.root_workflow_id, parent.root_run_id)
        else:
            root = (parent.workflow_id, parent.run_id)
        return Lineage(parent.workflow_id, parent.run_id, *root, close_policy)

    @staticmethod
    def of(row: Any) -> Lineage | None:
        """The lineage a run's row holds (a continuation, retry or cron run keeps it)."""
        if not row.parent_run_id:
            return None
        # Every child row has its root: written with it, or by the schema 4 upgrade.
        return Lineage(row.parent_workflow_id, row.parent_run_id, row.root_workflow_id,
                       row.root_run_id, row.parent_close_policy)


@dataclass(frozen=True)
class StartedRun:
    """The run a start resolved to."""

    run_id: str
    created: bool
    """False when an existing run was returned (same request id, or USE_EXISTING)."""
    row: Any = None
    """The new run's row as written (columns as attributes), when created."""


def terminated_event(reason: str, identity: str, at_ms: int) -> HistoryEvent:
    """A WORKFLOW_EXECUTION_TERMINATED close event."""
    event = HistoryEvent(event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED)
    event.event_time.FromMilliseconds(at_ms)
    attrs = event.workflow_execution_terminated_event_attributes
    attrs.reason = reason
    attrs.identity = identity
    return event


def start_run(store: Store, req: StartWorkflowExecutionRequest, *, owner: str | None,
              apply_policies: bool = True, run_id: str | None = None,
              first_execution_run_id: str | None = None, attempt: int = 1,
              continued_from_run_id: str | None = None,
              conn: sa.Connection | None = None, optimistic: bool = False,
              build_id: str | None = None, lineage: Lineage | None = None,
              time_skipping: str | None = None) -> StartedRun:
    """Create a run for ``req`` (or resolve to an existing one, per its policies).

    ``optimistic``: with the default policies, insert without reading first; a running run of
    the same workflow id then makes the insert fail (``sqlalchemy.exc.IntegrityError``, from
    the one-running-run index) and the caller starts again without ``optimistic``.
    ``build_id``: the worker version the run is pinned to (None: unversioned).
    ``lineage``: the parent and root of a child workflow (and of its continuations).
    ``time_skipping``: the run's clock (``_run_clock``), when it inherits a virtual time.
    """
    if conn is None:
        with store.engine.begin() as c:
            return start_run(store, req, owner=owner, apply_policies=apply_policies,
                             run_id=run_id, first_execution_run_id=first_execution_run_id,
                             attempt=attempt, continued_from_run_id=continued_from_run_id,
                             conn=c, build_id=build_id, lineage=lineage,
                             time_skipping=time_skipping)
    namespace = req.namespace or "default"
    if apply_policies and not (optimistic and _default_policies(req)):
        existing = _apply_policies(store, conn, req, namespace)
        if existing is not None:
            return existing
    run_id = run_id or str(uuid.uuid4())
    start_ms = now_ms()
    delay_ms = int(req.workflow_start_delay.ToMilliseconds())
    values: dict[str, Any] = {
        "run_id": run_id,
        "namespace": namespace,
        "workflow_id": req.workflow_id,
        "first_execution_run_id": first_execution_run_id or run_id,
        "workflow_type": req.workflow_type.name,
        "task_queue": req.task_queue.name,
        "status": S.WORKFLOW_EXECUTION_STATUS_RUNNING,
        "start_time_ms": start_ms,
        "execution_time_ms": start_ms + delay_ms,
        "start_request": req.SerializeToString(),
        "request_id": req.request_id or None,
        # Core derives the seed from the run id; so must we, or temporalio's Replayer would
        # replay workflow.random() differently (see dbosify.history._seed).
        "randomness_seed": _signed64(core_randomness_seed(run_id)),
        "attempt": attempt,
        "continued_from_run_id": continued_from_run_id,
        "memo": req.memo.SerializeToString() if req.HasField("memo") else None,
        "owner": owner,
        # The version the run is pinned to (DESIGN §6): the build id of the worker that will
        # drive it, when one in this process serves its type.
        "build_id": build_id,
    }
    if lineage is not None:
        # Only then: the insert of every other run keeps its one compiled form.
        values.update(parent_workflow_id=lineage.parent_workflow_id,
                      parent_run_id=lineage.parent_run_id,
                      root_workflow_id=lineage.root_workflow_id, root_run_id=lineage.root_run_id,
                      parent_close_policy=lineage.close_policy)
    if time_skipping is not None:
        values["time_skipping"] = time_skipping
    store.insert_run(conn, values, search_attribute_rows(req.search_attributes))
    row = SimpleNamespace(**{c.name: None for c in t.runs.columns})
    row.__dict__.update(values, history_length=0)
    return StartedRun(run_id, True, row)


def starts_in_one_statement(req: StartWorkflowExecutionRequest, owner: str | None) -> bool:
    """Whether an optimistic :func:`start_run` of ``req`` writes a single statement: the run's
    row, with no search attribute rows and no notice (an owned run wakes no one)."""
    return (owner is not None and _default_policies(req)
            and not req.search_attributes.indexed_fields)


def _default_policies(req: StartWorkflowExecutionRequest) -> bool:
    # Default reuse (allow duplicate) and conflict (fail) policies need no read when no run of
    # the id is running: the unique index tells us when one is.
    return req.workflow_id_reuse_policy in (
        WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_UNSPECIFIED,
        WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
    ) and req.workflow_id_conflict_policy in (
        WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_UNSPECIFIED,
        WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
    )


def _signed64(value: int) -> int:
    # BIGINT columns are signed; the seed is read back with & 0xFFFF_FFFF_FFFF_FFFF.
    return value - (1 << 64) if value >= (1 << 63) else value


def _apply_policies(store: Store, conn: sa.Connection, req: StartWorkflowExecutionRequest,
                    namespace: str) -> StartedRun | None:
    # One read: the newest run sorts a running one first.
    latest = store.latest_run(conn, namespace, req.workflow_id)
    running = latest if latest is not None and latest.status == RUNNING else None
    conflict = req.workflow_id_conflict_policy
    reuse = req.workflow_id_reuse_policy
    if running is not None:
        if req.request_id and running.request_id == req.request_id:
            return StartedRun(running.run_id, False)  # A retried start.
        if conflict == WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING:
            return StartedRun(running.run_id, False)
        if conflict == WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING or \
                reuse == WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_TERMINATE_IF_RUNNING:
            terminate_in(store, conn, running.run_id,
                         "terminated by a new start (workflow id conflict policy)", req.identity)
        else:
            raise WorkflowAlreadyStarted(req.workflow_id, running.workflow_type, running.run_id)
        return None
    if latest is None:
        return None
    if reuse == WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE:
        raise WorkflowAlreadyStarted(req.workflow_id, latest.workflow_type, latest.run_id)
    if reuse == WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY and \
            latest.status not in _FAILED_LIKE:
        raise WorkflowAlreadyStarted(req.workflow_id, latest.workflow_type, latest.run_id)
    return None


def terminate_in(store: Store, conn: sa.Connection, run_id: str, reason: str,
                 identity: str, details: bytes | None = None) -> bool:
    """Close a running run as terminated and wake its driver (inside ``conn``'s transaction)."""
    at = now_ms()
    event = terminated_event(reason, identity, at)
    if details:
        event.workflow_execution_terminated_event_attributes.details.ParseFromString(details)
    closed = store.close_run(run_id, S.WORKFLOW_EXECUTION_STATUS_TERMINATED,
                             event.SerializeToString(), at, 0, conn=conn)
    if closed:
        store.append_inbox(run_id, "terminate", b"", conn=conn)
        notify_parent_of(store, conn, run_id, event.SerializeToString())
        close_children_of(store, conn, run_id, identity)
    return closed


def apply_close_policy(store: Store, conn: sa.Connection, child_run_id: str, policy: int,
                       parent_run_id: str, namespace: str, identity: str) -> bool:
    """Apply a child's ``ParentClosePolicy`` because its parent closed (inside the parent's
    close transaction). False when the policy leaves the child alone (abandon)."""
    if policy == ParentClosePolicy.PARENT_CLOSE_POLICY_ABANDON:
        return False
    if policy == ParentClosePolicy.PARENT_CLOSE_POLICY_REQUEST_CANCEL:
        request = RequestCancelWorkflowExecutionRequest(
            namespace=namespace, identity=identity,
            reason="parent workflow closed (parent close policy REQUEST_CANCEL)")
        # Keyed by the parent: applied twice (the close and a fallback), it is one request.
        store.append_inbox(child_run_id, "cancel", request.SerializeToString(),
                           f"parent_close/{parent_run_id}", conn=conn)
    else:  # TERMINATE, Temporal's default.
        terminate_in(store, conn, child_run_id, "by parent close policy", identity)
    return True


def close_children_of(store: Store, conn: sa.Connection, parent_run_id: str,
                      identity: str) -> None:
    """Apply the close policy of every running child of a parent that closed without its
    code (terminated, timed out), in the close's transaction, as Temporal's server does; a
    terminated child's own children follow. Children recorded before schema version 4 have
    no policy stored: the parent's driver applies theirs."""
    r = t.runs
    children = conn.execute(
        sa.select(r.c.run_id, r.c.namespace, r.c.parent_close_policy)
        .where(r.c.parent_run_id == parent_run_id, r.c.status == RUNNING,
               r.c.parent_close_policy.isnot(None))).all()
    for child in children:
        apply_close_policy(store, conn, child.run_id, child.parent_close_policy, parent_run_id,
                           child.namespace, identity)
