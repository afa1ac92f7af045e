"""Reads and writes of dbosify's own tables. Blocking: callers on an event loop use a thread."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from temporalio.api.common.v1 import Memo
from temporalio.api.enums.v1 import WorkflowExecutionStatus

from dbosify._store import _clock
from dbosify._store import _tables as t
from dbosify._store._database import POSTGRES_SCHEMA, DatabaseURL, create_engine

RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
_NOTIFY = sa.text("SELECT pg_notify('dbosify', :m)")

# Statements of the hot path, built once: SQLAlchemy memoizes a statement object's cache key,
# so reusing one costs about half the CPU of building it per call (bench W2).
_INSERT_RUN = sa.insert(t.runs)


def _close_statement(postgres: bool, with_history_length: bool) -> sa.Executable:
    # Bind names differ from the column names: SQLAlchemy reserves those for the SET clause.
    values: dict[str, Any] = {"status": sa.bindparam("new_status"),
                              "close_event": sa.bindparam("new_close_event"),
                              "close_time_ms": sa.bindparam("new_close_time_ms"),
                              "close_records": sa.bindparam("new_close_records"),
                              "task_failure": None}
    if with_history_length:
        values["history_length"] = sa.bindparam("new_history_length")
    update = (sa.update(t.runs)
              .where(t.runs.c.run_id == sa.bindparam("closing_run_id"),
                     t.runs.c.status == RUNNING)
              .values(**values))
    if not postgres:
        return update
    # One round trip: the update, and the notice only if it closed the run.
    closed = update.returning(t.runs.c.run_id).cte("closed")
    return sa.select(sa.func.pg_notify("dbosify", sa.literal("closed:") + closed.c.run_id)
                     ).select_from(closed)


_CLOSE_RUN = {(pg, hl): _close_statement(pg, hl) for pg in (False, True) for hl in (False, True)}


ASYNC_HOLDER = "dbosify:async-completion"
"""``claimed_by`` of an attempt held for outside completion (never a process's executor id, so
no worker claims it)."""


@dataclass(frozen=True)
class AsyncActivity:
    """An attempt waiting for outside completion."""

    task_id: int
    seq: int
    attempt: int
    cancel_reason: int | None


def now_ms() -> int:
    """Epoch milliseconds, the unit of every time dbosify stores (wall time, plus what a
    time-skipping test environment skipped: dbosify._store._clock)."""
    return _clock.now_ms()


@dataclass(frozen=True)
class InboxEvent:
    """An event written for a run by someone other than the run itself."""

    id: int
    run_id: str
    kind: str
    payload: bytes
    created_ms: int


@dataclass(frozen=True)
class ActivityTaskRow:
    """An activity attempt waiting for, or claimed by, a worker of its task queue."""

    id: int
    run_id: str
    seq: int
    attempt: int
    task_queue: str
    payload: bytes
    build_id: str | None = None


def _versions_allowed(table: sa.Table, builds: Sequence[tuple[str, str]]
                      ) -> sa.ColumnElement[bool]:
    """Rows a worker with these (task queue, build id) pairs may take: unversioned ones, and
    those pinned to a build id it has on their task queue (Temporal's worker versioning)."""
    pinned = [sa.and_(table.c.task_queue == queue, table.c.build_id == build)
              for queue, build in builds]
    return sa.or_(table.c.build_id.is_(None), *pinned)


class Store:
    """dbosify's tables in one database (SQLite file or Postgres), shared by every process."""

    def __init__(self, db: DatabaseURL) -> None:
        self.db = db
        self.engine = create_engine(db)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def is_postgres(self) -> bool:
        """Whether the database is Postgres (LISTEN/NOTIFY, SKIP LOCKED)."""
        return self.db.dialect == "postgresql"

    @contextmanager
    def transaction(self, *, one_statement: bool = False) -> Iterator[sa.Connection]:
        """A connection whose writes commit together when the block ends without error.

        ``one_statement``: the block issues a single statement, which Postgres then runs on
        its own (autocommit): one round trip, where a transaction takes three (BEGIN, the
        statement, COMMIT). The hot path's start and close are single statements.
        """
        if one_statement and self.is_postgres:
            with self._autocommit.connect() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def _notify(self, conn: sa.Connection, message: str) -> None:
        # Delivered at commit, so a woken reader always sees the row.
        if self.is_postgres:
            conn.execute(_NOTIFY, {"m": message})

    # Runs -------------------------------------------------------------------------------------

    def insert_run(self, conn: sa.Connection, values: dict[str, Any],
                   search_attributes: Sequence[dict[str, Any]]) -> None:
        """Insert a new run (inside the caller's transaction, after its policy checks)."""
        conn.execute(_INSERT_RUN, values)
        if search_attributes:
            conn.execute(sa.insert(t.search_attributes),
                         _attribute_rows(values["run_id"], search_attributes))
        if values.get("owner") is None:
            # Only an unowned run is there for the taking; waking every worker process for a
            # run its creator drives itself costs each of them a claim query per start.
            self._notify(conn, f"run:{values['task_queue']}")

    def latest_run(self, conn: sa.Connection, namespace: str,
                   workflow_id: str) -> sa.Row[Any] | None:
        """The newest execution of a workflow id (running or closed), if any."""
        return conn.execute(
            sa.select(t.runs)
            .where(t.runs.c.namespace == namespace, t.runs.c.workflow_id == workflow_id)
            .order_by((t.runs.c.status == RUNNING).desc(), t.runs.c.start_time_ms.desc(),
                      t.runs.c.run_id.desc())
            .limit(1)
        ).first()

    def get_run(self, namespace: str, workflow_id: str, run_id: str = "") -> sa.Row[Any] | None:
        """A run by workflow id and run id, or the newest run of the workflow id."""
        with self.engine.connect() as conn:
            if not run_id:
                return self.latest_run(conn, namespace, workflow_id)
            return conn.execute(
                sa.select(t.runs).where(t.runs.c.run_id == run_id,
                                        t.runs.c.namespace == namespace,
                                        t.runs.c.workflow_id == workflow_id)
            ).first()

    def get_run_by_id(self, run_id: str) -> sa.Row[Any] | None:
        """A run by its run id alone."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).first()

    def close_run(self, run_id: str, status: int, close_event: bytes, close_ms: int,
                  history_length: int, conn: sa.Connection | None = None,
                  close_records: str | None = None) -> bool:
        """Mark a running run closed. False when it was closed already (e.g. terminated)."""
        # 0: the closer does not know the history length (a terminate from a client).
        stmt = _CLOSE_RUN[(self.is_postgres, history_length > 0)]
        params = {"closing_run_id": run_id, "new_status": status, "new_close_event": close_event,
                  "new_close_time_ms": close_ms, "new_close_records": close_records}
        if history_length > 0:
            params["new_history_length"] = history_length

        def write(c: sa.Connection) -> bool:
            result = c.execute(stmt, params)
            if self.is_postgres:
                return len(result.all()) == 1
            return result.rowcount == 1

        if conn is not None:
            return write(conn)
        with self.engine.begin() as c:
            return write(c)

    def update_run(self, run_id: str, **values: Any) -> None:
        """Set columns of a run (progress, task failure, memo)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.runs).where(t.runs.c.run_id == run_id).values(**values))

    def claim_unowned_runs(self, task_queues: Iterable[str], owner: str,
                           limit: int, builds: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Take up to ``limit`` running runs of these task queues that no worker has yet
        (a run pinned to a build id only if ``builds`` has it for its task queue)."""
        queues = list(task_queues)
        if not queues or limit <= 0:
            return []
        with self.engine.begin() as conn:
            query = (
                sa.select(t.runs.c.run_id)
                .where(t.runs.c.task_queue.in_(queues), t.runs.c.status == RUNNING,
                       t.runs.c.owner.is_(None), _versions_allowed(t.runs, builds))
                .order_by(t.runs.c.start_time_ms)
                .limit(limit)
            )
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [r[0] for r in conn.execute(query)]
            if ids:
                conn.execute(sa.update(t.runs).where(t.runs.c.run_id.in_(ids),
                                                     t.runs.c.owner.is_(None))
                             .values(owner=owner))
            return ids

    def pin_run_build(self, run_id: str, build_id: str, owner: str) -> sa.Row[Any] | None:
        """Pin an unversioned run that ``owner`` holds and that has had no workflow task yet
        to ``build_id`` (Temporal assigns a build id at a run's first workflow task); the run's
        row as it then is (None: no such running run of ``owner``)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.runs).where(
                t.runs.c.run_id == run_id, t.runs.c.owner == owner,
                t.runs.c.status == RUNNING, t.runs.c.build_id.is_(None))
                .values(build_id=build_id))
            return conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id,
                                                        t.runs.c.owner == owner,
                                                        t.runs.c.status == RUNNING)).first()

    def take_over_runs(self, task_queues: Iterable[str], dead_owners: Sequence[str],
                       owner: str, builds: Sequence[tuple[str, str]] = ()) -> list[str]:
        """Move the running runs of dead processes, on these task queues, to ``owner`` (a run
        pinned to a build id only if ``builds`` has it for its task queue)."""
        queues = list(task_queues)
        if not queues or not dead_owners:
            return []
        with self.engine.begin() as conn:
            query = sa.select(t.runs.c.run_id).where(
                t.runs.c.task_queue.in_(queues), t.runs.c.status == RUNNING,
                t.runs.c.owner.in_(list(dead_owners)), _versions_allowed(t.runs, builds))
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = [r[0] for r in conn.execute(query)]
            if ids:
                conn.execute(sa.update(t.runs).where(t.runs.c.run_id.in_(ids),
                                                     t.runs.c.owner.in_(list(dead_owners)))
                             .values(owner=owner))
            return ids

    def release_runs(self, run_ids: Sequence[str], owner: str) -> None:
        """Give runs back (a worker shut down) so another worker takes them at once."""
        if not run_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.runs).where(t.runs.c.run_id.in_(list(run_ids)),
                                                 t.runs.c.owner == owner,
                                                 t.runs.c.status == RUNNING)
                         .values(owner=None))
            self._notify(conn, "run:")

    def release_owned_runs(self, owner: str) -> None:
        """Give back every running run ``owner`` holds (its workers' event loop is gone)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.runs).where(t.runs.c.owner == owner,
                                                 t.runs.c.status == RUNNING)
                         .values(owner=None))
            self._notify(conn, "run:")

    def _dbos_table(self, name: str) -> str:
        # DBOS's own tables: in its schema on Postgres, beside ours in a SQLite file.
        return f"dbos.{name}" if self.is_postgres else name

    def errored_runs(self, owner: str) -> list[str]:
        """Running runs of ``owner`` whose DBOS workflow ended in ERROR (its body raised: a
        database error that outlasted the retries, a bug). Such a run would stay RUNNING with
        nothing left to drive it."""
        # From DBOS's side, by its indexed executor id and status: cheap on a pass every few
        # seconds however many runs there are.
        query = sa.text(
            f"SELECT r.run_id FROM {self._dbos_table('workflow_status')} w"
            f" JOIN {_runs_table(self)} r ON r.run_id = w.workflow_uuid"
            " WHERE w.executor_id = :owner AND w.status = 'ERROR' AND r.status = :running")
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query, {"running": RUNNING, "owner": owner})]

    def requeue_errored_workflow(self, run_id: str, queue_name: str) -> bool:
        """Put the ERROR DBOS workflow of a running run back on ``queue_name``, so DBOS runs it
        again from its recorded steps, as ``DBOS.resume_workflow`` does for other states (it
        refuses ERROR; going around it is the only way to resume such a run, DESIGN §9.2)."""
        status = self._dbos_table("workflow_status")
        query = sa.text(
            f"UPDATE {status} SET status = 'ENQUEUED', queue_name = :queue, owner_xid = NULL,"
            " recovery_attempts = 0, workflow_deadline_epoch_ms = NULL,"
            " deduplication_id = NULL, started_at_epoch_ms = NULL, completed_at = NULL,"
            " updated_at = :now WHERE workflow_uuid = :run_id AND status = 'ERROR'"
            f" AND EXISTS (SELECT 1 FROM {_runs_table(self)} r WHERE r.run_id = :run_id"
            " AND r.status = :running)")
        with self.engine.begin() as conn:
            result = conn.execute(query, {"queue": queue_name, "now": now_ms(),
                                          "run_id": run_id, "running": RUNNING})
            return bool(result.rowcount)

    def upsert_search_attributes(self, run_id: str, names: Sequence[str],
                                 rows: Sequence[dict[str, Any]]) -> None:
        """Replace the named search attributes of a run (a name with no rows is removed)."""
        with self.engine.begin() as conn:
            if names:
                conn.execute(sa.delete(t.search_attributes).where(
                    t.search_attributes.c.run_id == run_id,
                    t.search_attributes.c.name.in_(list(names))))
            if rows:
                conn.execute(sa.insert(t.search_attributes), _attribute_rows(run_id, rows))

    def upsert_memo(self, run_id: str, upserted: Memo) -> None:
        """Merge memo fields into a run's memo (a null or empty payload removes a field, as
        ``workflow.upsert_memo({"key": None})`` asks and Temporal's server does)."""
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(t.runs.c.memo).where(t.runs.c.run_id == run_id)
                                   ).scalar()
            memo = Memo()
            if current:
                memo.ParseFromString(current)
            for key, value in upserted.fields.items():
                null = value.metadata.get("encoding") == b"binary/null"
                if (value.data or value.metadata) and not null:
                    memo.fields[key].CopyFrom(value)
                else:
                    memo.fields.pop(key, None)
            conn.execute(sa.update(t.runs).where(t.runs.c.run_id == run_id)
                         .values(memo=memo.SerializeToString()))

    def search_attributes_of(self, run_ids: Sequence[str]) -> dict[str, list[sa.Row[Any]]]:
        """The search attribute rows of these runs, by run id."""
        out: dict[str, list[sa.Row[Any]]] = {r: [] for r in run_ids}
        if not run_ids:
            return out
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(t.search_attributes).where(
                    t.search_attributes.c.run_id.in_(list(run_ids)))):
                out[row.run_id].append(row)
        return out

    # Inbox ------------------------------------------------------------------------------------

    def append_inbox(self, run_id: str, kind: str, payload: bytes,
                     dedup_key: str | None = None, conn: sa.Connection | None = None) -> bool:
        """Write an event for a run. False when an event with the same dedup key exists."""
        values = {"run_id": run_id, "kind": kind, "payload": payload, "dedup_key": dedup_key,
                  "created_ms": now_ms()}

        def write(c: sa.Connection) -> bool:
            if dedup_key is not None:
                seen = c.execute(sa.select(t.inbox.c.id).where(
                    t.inbox.c.run_id == run_id, t.inbox.c.dedup_key == dedup_key)).first()
                if seen is not None:
                    return False
            c.execute(sa.insert(t.inbox).values(**values))
            self._notify(c, f"inbox:{run_id}")
            return True

        if conn is not None:
            return write(conn)
        with self.engine.begin() as c:
            return write(c)

    def send_to_workflow(self, namespace: str, workflow_id: str, run_id: str, kind: str,
                         payload: bytes, dedup_key: str) -> str | None:
        """Write an event for a running workflow (``run_id`` empty: its current run); the run
        id it went to, or None when no such run is running."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.runs).where(
                t.runs.c.run_id == run_id, t.runs.c.namespace == namespace,
                t.runs.c.workflow_id == workflow_id)).first() if run_id else \
                self.latest_run(conn, namespace, workflow_id)
            if row is None or row.status != RUNNING:
                return None
            self.append_inbox(row.run_id, kind, payload, dedup_key, conn=conn)
            return str(row.run_id)

    def read_inbox(self, run_id: str, after_id: int) -> list[InboxEvent]:
        """A run's events with an id above ``after_id``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.inbox).where(t.inbox.c.run_id == run_id, t.inbox.c.id > after_id)
                .order_by(t.inbox.c.id)
            ).all()
        return [InboxEvent(r.id, r.run_id, r.kind, r.payload, r.created_ms) for r in rows]

    def runs_with_inbox_after(self, after_id: int) -> tuple[int, set[str]]:
        """The newest inbox id and the runs with events above ``after_id`` (cross-process poll)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.inbox.c.id, t.inbox.c.run_id).where(t.inbox.c.id > after_id)
            ).all()
            if not rows:
                newest = conn.execute(sa.select(sa.func.max(t.inbox.c.id))).scalar() or 0
                return max(newest, after_id), set()
        return max(r[0] for r in rows), {r[1] for r in rows}

    # Activity tasks ---------------------------------------------------------------------------

    def add_activity_task(self, run_id: str, seq: int, attempt: int, task_queue: str,
                          payload: bytes, build_id: str | None = None) -> None:
        """Offer an activity attempt to the workers of its task queue (idempotent); with a
        ``build_id``, only to workers that have it."""
        with self.engine.begin() as conn:
            seen = conn.execute(sa.select(t.activity_tasks.c.id).where(
                t.activity_tasks.c.run_id == run_id, t.activity_tasks.c.seq == seq,
                t.activity_tasks.c.attempt == attempt)).first()
            if seen is None:
                conn.execute(sa.insert(t.activity_tasks).values(
                    run_id=run_id, seq=seq, attempt=attempt, task_queue=task_queue,
                    payload=payload, created_ms=now_ms(), build_id=build_id))
                self._notify(conn, f"activity:{task_queue}")

    def claim_activity_tasks(self, task_queues: Iterable[str], owner: str, limit: int,
                             dead_owners: Sequence[str] = (),
                             builds: Sequence[tuple[str, str]] = ()) -> list[ActivityTaskRow]:
        """Take activity attempts of these task queues: unclaimed, or claimed by dead workers
        (an attempt pinned to a build id only if ``builds`` has it for its task queue)."""
        queues = list(task_queues)
        if not queues or limit <= 0:
            return []
        at = t.activity_tasks
        with self.engine.begin() as conn:
            free: sa.ColumnElement[bool] = at.c.claimed_by.is_(None)
            if dead_owners:
                free = sa.or_(free, at.c.claimed_by.in_(list(dead_owners)))
            query = sa.select(at).where(at.c.task_queue.in_(queues), free,
                                        _versions_allowed(at, builds)).order_by(at.c.id)
            query = query.limit(limit)
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                conn.execute(sa.update(at).where(at.c.id.in_([r.id for r in rows]))
                             .values(claimed_by=owner, claimed_ms=now_ms()))
        return [ActivityTaskRow(r.id, r.run_id, r.seq, r.attempt, r.task_queue, r.payload,
                                r.build_id) for r in rows]

    def finish_activity_task(self, task_id: int, run_id: str, result_payload: bytes,
                             dedup_key: str) -> None:
        """Deliver an attempt's outcome to its run and drop the task, in one transaction."""
        with self.engine.begin() as conn:
            self.append_inbox(run_id, "activity_result", result_payload, dedup_key, conn=conn)
            conn.execute(sa.delete(t.activity_tasks).where(t.activity_tasks.c.id == task_id))

    def hold_async_activity(self, run_id: str, seq: int, attempt: int, task_queue: str,
                            activity_id: str) -> None:
        """Keep an attempt that will be completed from outside (``activity.raise_complete_async()``)
        as a task claimed by no process: heartbeats and completions by task token or by id find
        it, a cancel marks it, and the run's close removes it."""
        at = t.activity_tasks
        with self.engine.begin() as conn:
            conn.execute(sa.delete(at).where(at.c.run_id == run_id, at.c.seq == seq,
                                             at.c.attempt == attempt))
            conn.execute(sa.insert(at).values(
                run_id=run_id, seq=seq, attempt=attempt, task_queue=task_queue,
                payload=activity_id.encode(), created_ms=now_ms(), claimed_by=ASYNC_HOLDER,
                claimed_ms=now_ms()))

    def async_activity(self, run_id: str, *, seq: int | None = None, attempt: int | None = None,
                       activity_id: str | None = None) -> AsyncActivity | None:
        """The held attempt of a run waiting for outside completion, by seq and attempt (a task
        token) or by activity id; None when there is none (completed already, or never async)."""
        at = t.activity_tasks
        cond = [at.c.run_id == run_id, at.c.claimed_by == ASYNC_HOLDER]
        if seq is not None:
            cond.append(at.c.seq == seq)
        if attempt is not None:
            cond.append(at.c.attempt == attempt)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(at.c.id, at.c.seq, at.c.attempt, at.c.payload,
                                          at.c.cancel_reason).where(*cond)).all()
        for row in rows:
            if activity_id is None or bytes(row.payload).decode() == activity_id:
                return AsyncActivity(row.id, row.seq, row.attempt, row.cancel_reason)
        return None

    def release_async_activity(self, run_id: str, seq: int, attempt: int,
                               beat_before_ms: int | None = None) -> tuple[bool, int | None]:
        """Stop holding an attempt for outside completion (it timed out): (True, None). With
        ``beat_before_ms`` (a heartbeat timeout), only if its last outside heartbeat is older;
        else (False, time of that heartbeat). (False, None): an outside completion came first."""
        at = t.activity_tasks
        held = (at.c.run_id == run_id, at.c.seq == seq, at.c.attempt == attempt,
                at.c.claimed_by == ASYNC_HOLDER)
        stale = (at.c.claimed_ms < beat_before_ms,) if beat_before_ms is not None else ()
        with self.engine.begin() as conn:
            if conn.execute(sa.delete(at).where(*held, *stale)).rowcount == 1:
                return True, None
            beat = conn.execute(sa.select(at.c.claimed_ms).where(*held)).scalar()
        return False, int(beat) if beat is not None else None

    def beat_async_activity(self, task_id: int, run_id: str, seq: int,
                            details: bytes) -> int | None:
        """An outside heartbeat of a held attempt: like :meth:`activity_heartbeat`, and its
        time is kept (in ``claimed_ms``) for the attempt's heartbeat timeout."""
        at = t.activity_tasks
        with self.engine.begin() as conn:
            row = conn.execute(sa.update(at).where(at.c.id == task_id)
                               .values(claimed_ms=now_ms())
                               .returning(at.c.cancel_reason)).first()
            if row is None:
                return 0
            self.save_heartbeat(run_id, seq, details, conn=conn)
        return int(row[0]) if row[0] is not None else None

    def withdraw_activity_task(self, run_id: str, seq: int, attempt: int) -> bool:
        """Remove an offered attempt if no worker has claimed it yet."""
        at = t.activity_tasks
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(at).where(
                at.c.run_id == run_id, at.c.seq == seq, at.c.attempt == attempt,
                at.c.claimed_by.is_(None))).rowcount == 1

    def cancel_activity_task(self, run_id: str, seq: int, attempt: int, reason: int) -> bool:
        """Stop an offered attempt: withdraw it when no worker has claimed it (True), else ask
        its worker to cancel it (False; the attempt's outcome arrives as usual)."""
        at = t.activity_tasks
        which = (at.c.run_id == run_id, at.c.seq == seq, at.c.attempt == attempt)
        with self.engine.begin() as conn:
            if conn.execute(sa.delete(at).where(*which, at.c.claimed_by.is_(None))).rowcount:
                return True
            claimed_by = conn.execute(sa.update(at).where(*which).values(cancel_reason=reason)
                                      .returning(at.c.claimed_by)).scalar()
            if claimed_by is not None:
                self._notify(conn, f"activity_cancel:{claimed_by}")
        return False

    def activity_heartbeat(self, task_id: int, run_id: str, seq: int,
                           details: bytes) -> int | None:
        """A claimed attempt's heartbeat: keep its details for the next attempt,
        and return the reason its run asks it to stop, if it does (NOT_FOUND, 0, when the task
        is gone: its run closed)."""
        at = t.activity_tasks
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(at.c.cancel_reason).where(at.c.id == task_id)).first()
            if row is None:
                return 0
            self.save_heartbeat(run_id, seq, details, conn=conn)
        return int(row[0]) if row[0] is not None else None

    def cancelled_activity_tasks(self, task_ids: Sequence[int]) -> dict[int, int]:
        """Of these claimed attempts, the ones to stop, with the reason (0 when gone)."""
        at = t.activity_tasks
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(at.c.id, at.c.cancel_reason)
                                .where(at.c.id.in_(list(task_ids)))).all()
        present = {r[0]: r[1] for r in rows}
        return {i: present.get(i) or 0 for i in task_ids
                if i not in present or present[i] is not None}

    def drop_activity_tasks(self, run_id: str, seq: int | None = None,
                            conn: sa.Connection | None = None) -> None:
        """Forget a run's offered attempts and saved heartbeats (the run closed)."""
        cond = [t.activity_tasks.c.run_id == run_id]
        beats = [t.heartbeats.c.run_id == run_id]
        if seq is not None:
            cond.append(t.activity_tasks.c.seq == seq)
            beats.append(t.heartbeats.c.seq == seq)
        if conn is not None:
            conn.execute(sa.delete(t.activity_tasks).where(*cond))
            conn.execute(sa.delete(t.heartbeats).where(*beats))
            return
        with self.engine.begin() as c:
            c.execute(sa.delete(t.activity_tasks).where(*cond))
            c.execute(sa.delete(t.heartbeats).where(*beats))

    # Updates ----------------------------------------------------------------------------------

    def put_update(self, run_id: str, update_id: str, stage: int, outcome: bytes | None) -> None:
        """Record how far an update got, never moving it back (one atomic upsert: accepted and
        completed may be written at the same moment)."""
        u = t.updates
        insert = (postgresql.insert(u) if self.is_postgres else sqlite.insert(u)).values(
            run_id=run_id, update_id=update_id, stage=stage, outcome=outcome,
            updated_ms=now_ms())
        upsert = insert.on_conflict_do_update(
            index_elements=[u.c.run_id, u.c.update_id],
            set_={"stage": insert.excluded.stage, "outcome": insert.excluded.outcome,
                  "updated_ms": insert.excluded.updated_ms},
            where=u.c.stage < insert.excluded.stage)
        with self.engine.begin() as conn:
            conn.execute(upsert)
            self._notify(conn, f"update:{run_id}")

    def get_update(self, run_id: str, update_id: str) -> tuple[int, bytes | None] | None:
        """An update's (stage, outcome), if the run has seen it."""
        u = t.updates
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(u.c.stage, u.c.outcome).where(
                u.c.run_id == run_id, u.c.update_id == update_id)).first()
        return (row.stage, row.outcome) if row is not None else None

    # Queries across processes -----------------------------------------------------------------

    def ask_query(self, run_id: str, owner: str, job: bytes) -> int:
        """Leave a query for the process that drives the run; returns its id."""
        with self.engine.begin() as conn:
            query_id = conn.execute(sa.insert(t.queries).values(
                run_id=run_id, owner=owner, job=job, created_ms=now_ms())
                .returning(t.queries.c.id)).scalar_one()
            self._notify(conn, f"query:{owner}")
            return int(query_id)

    def query_answer(self, query_id: int, drop: bool = False) -> bytes | None:
        """The answer to a query, if given (``drop`` removes the query once read)."""
        with self.engine.begin() as conn:
            answer = conn.execute(sa.select(t.queries.c.answer)
                                  .where(t.queries.c.id == query_id)).scalar()
            if drop:
                conn.execute(sa.delete(t.queries).where(t.queries.c.id == query_id))
        return bytes(answer) if answer is not None else None

    def open_queries(self, owner: str) -> list[tuple[int, str, bytes]]:
        """Queries waiting for this process to answer."""
        q = t.queries
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(q.c.id, q.c.run_id, q.c.job).where(
                q.c.owner == owner, q.c.answer.is_(None)).order_by(q.c.id)).all()
        return [(r.id, r.run_id, bytes(r.job)) for r in rows]

    def process_serving(self, task_queue: str, lease_ms: int, exclude: str) -> str | None:
        """A live process (heartbeat within ``lease_ms``) with a worker of ``task_queue``,
        other than ``exclude``: it can answer for runs of that queue (a closed run's query)."""
        p = t.processes
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(p.c.executor_id, p.c.task_queues).where(
                p.c.stopped.is_(False), p.c.heartbeat_ms >= now_ms() - lease_ms,
                p.c.executor_id != exclude).order_by(p.c.heartbeat_ms.desc())).all()
        for row in rows:
            if task_queue in row.task_queues.split():
                return str(row.executor_id)
        return None

    def answer_query(self, query_id: int, answer: bytes, run_id: str) -> None:
        """Answer a query (the asker is woken by NOTIFY or its poll)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.queries).where(t.queries.c.id == query_id)
                         .values(answer=answer))
            self._notify(conn, f"answer:{query_id}")

    # Heartbeat details -----------------------------------------------------------------------

    def save_heartbeat(self, run_id: str, seq: int, details: bytes,
                       conn: sa.Connection | None = None) -> None:
        """Keep an activity's latest heartbeat details for its next attempt, even after a crash."""
        if conn is None:
            with self.engine.begin() as c:
                return self.save_heartbeat(run_id, seq, details, conn=c)
        updated = conn.execute(sa.update(t.heartbeats).where(
            t.heartbeats.c.run_id == run_id, t.heartbeats.c.seq == seq)
            .values(details=details, updated_ms=now_ms())).rowcount
        if not updated:
            conn.execute(sa.insert(t.heartbeats).values(run_id=run_id, seq=seq,
                                                        details=details, updated_ms=now_ms()))
        return None

    def load_heartbeat(self, run_id: str, seq: int) -> bytes | None:
        """An activity's saved heartbeat details, if any."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(t.heartbeats.c.details).where(
                t.heartbeats.c.run_id == run_id, t.heartbeats.c.seq == seq)).scalar()
        return bytes(value) if value is not None else None

    # Processes --------------------------------------------------------------------------------

    def register_process(self, executor_id: str, identity: str, task_queues: Iterable[str]) -> None:
        """Record this process as live."""
        ms = now_ms()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.processes).where(t.processes.c.executor_id == executor_id))
            conn.execute(sa.insert(t.processes).values(
                executor_id=executor_id, identity=identity, host=socket.gethostname(),
                pid=os.getpid(), task_queues=" ".join(sorted(task_queues)), started_ms=ms,
                heartbeat_ms=ms, stopped=False))

    def heartbeat_process(self, executor_id: str, task_queues: Iterable[str]) -> None:
        """Renew this process's lease."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.processes).where(t.processes.c.executor_id == executor_id)
                         .values(heartbeat_ms=now_ms(), task_queues=" ".join(sorted(task_queues))))

    def stop_process(self, executor_id: str) -> None:
        """Record a clean shutdown: this process's runs are free at once."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.processes).where(t.processes.c.executor_id == executor_id)
                         .values(stopped=True, heartbeat_ms=now_ms()))

    def dead_processes(self, lease_ms: int, identity: str, me: str) -> list[str]:
        """Executors whose runs may be taken: silent past the lease, stopped, or this identity's
        predecessors on this host whose process is gone (taken at once, DESIGN §9.3)."""
        host = socket.gethostname()
        cutoff = now_ms() - lease_ms
        with self.engine.connect() as conn:
            # Owners first: a process registers before it owns a run, so every owner read here
            # is in the process rows read next. Read the other way round, a worker registering
            # and claiming in between would look unregistered, hence dead, and lose its runs.
            owners = {r[0] for r in conn.execute(
                sa.select(t.runs.c.owner).where(t.runs.c.status == RUNNING,
                                                t.runs.c.owner.is_not(None)).distinct())}
            rows = conn.execute(sa.select(t.processes).where(t.processes.c.executor_id != me)).all()
        known = {r.executor_id for r in rows}
        dead = [r.executor_id for r in rows
                if r.stopped or r.heartbeat_ms < cutoff
                or (r.identity == identity and r.host == host and not _pid_alive(r.pid))]
        # An owner with no process row never heartbeat (crashed before registering).
        dead.extend(o for o in owners if o not in known and o != me)
        return dead


def _runs_table(store: Store) -> str:
    return f"{POSTGRES_SCHEMA}.dbosify_runs" if store.is_postgres else "dbosify_runs"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_VALUE_COLUMNS = ("value_text", "value_int", "value_double", "value_bool", "value_time_ms")


def _attribute_rows(run_id: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Search-attribute rows for one multi-row INSERT: every row names every value column
    (SQLAlchemy takes the columns of an executemany from its first row)."""
    return [{"run_id": run_id, **dict.fromkeys(_VALUE_COLUMNS), **row} for row in rows]
