"""Runs: their rows in ``dbosify_runs`` (start, close, ownership, worker versions), their search
attributes and memo, and their DBOS workflows when one ended in ERROR."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from temporalio.api.common.v1 import Memo

from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, StoreBase, now_ms, versions_allowed
from dbosify._store._database import POSTGRES_SCHEMA

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


class RunRows(StoreBase):
    """The runs of a database (:class:`~dbosify._store._store.Store` has them)."""

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
                       t.runs.c.owner.is_(None), versions_allowed(t.runs, builds))
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
                t.runs.c.owner.in_(list(dead_owners)), versions_allowed(t.runs, builds))
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


def _runs_table(store: StoreBase) -> str:
    return f"{POSTGRES_SCHEMA}.dbosify_runs" if store.is_postgres else "dbosify_runs"



_VALUE_COLUMNS = ("value_text", "value_int", "value_double", "value_bool", "value_time_ms")


def _attribute_rows(run_id: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Search-attribute rows for one multi-row INSERT: every row names every value column
    (SQLAlchemy takes the columns of an executemany from its first row)."""
    return [{"run_id": run_id, **dict.fromkeys(_VALUE_COLUMNS), **row} for row in rows]
