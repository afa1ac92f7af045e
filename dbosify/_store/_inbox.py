"""A run's inbox: the events written for it by others (signals, cancel requests, updates,
terminations, activity results from other processes, children's closes)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, now_ms
from dbosify._store._runs import RunRows


@dataclass(frozen=True)
class InboxEvent:
    """An event written for a run by someone other than the run itself."""

    id: int
    run_id: str
    kind: str
    payload: bytes
    created_ms: int



class InboxRows(RunRows):
    """The inboxes of a database's runs (sending to a workflow finds its run)."""

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
