"""Reads and writes of the schedule tables. Blocking; every function works inside the caller's
transaction (``conn``), so a firing writes its runs and advances the schedule atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from dbosify._store import _tables as t

_KEEP_ACTIONS = 20
"""Actions kept per schedule: describe shows the last 10; the rest catch a repeated time."""


def lock(conn: sa.Connection, namespace: str, schedule_id: str, *,
         skip_locked: bool = False) -> sa.Row[Any] | None:
    """A schedule's row, locked until the transaction ends (Postgres ``FOR UPDATE``; SQLite's
    transactions already hold the single write lock). ``skip_locked``: None if another
    transaction holds it."""
    s = t.schedules
    stmt = sa.select(s).where(s.c.namespace == namespace, s.c.schedule_id == schedule_id)
    return conn.execute(stmt.with_for_update(skip_locked=skip_locked)).first()


def get(conn: sa.Connection, namespace: str, schedule_id: str) -> sa.Row[Any] | None:
    """A schedule's row, unlocked."""
    s = t.schedules
    return conn.execute(sa.select(s).where(s.c.namespace == namespace,
                                           s.c.schedule_id == schedule_id)).first()


def needing_work(conn: sa.Connection, now_ms: int, limit: int) -> list[tuple[str, str]]:
    """Schedules due by ``now_ms`` or asking for attention, soonest first."""
    s = t.schedules
    rows = conn.execute(
        sa.select(s.c.namespace, s.c.schedule_id)
        .where(sa.or_(s.c.next_due_ms <= now_ms, s.c.attention))
        .order_by(s.c.next_due_ms).limit(limit)).all()
    return [(r.namespace, r.schedule_id) for r in rows]


def earliest_due(conn: sa.Connection) -> tuple[int | None, bool]:
    """The soonest due time of any schedule, and whether any asks for attention."""
    s = t.schedules
    due, attention = conn.execute(
        sa.select(sa.func.min(s.c.next_due_ms),
                  sa.func.max(sa.case((s.c.attention, 1), else_=0)))).one()
    return (int(due) if due is not None else None), bool(attention)


def insert(conn: sa.Connection, values: dict[str, Any]) -> None:
    conn.execute(sa.insert(t.schedules).values(**values))


def update(conn: sa.Connection, namespace: str, schedule_id: str, version: int,
           values: dict[str, Any]) -> bool:
    """Write a schedule's new state if nobody wrote it since ``version`` was read."""
    s = t.schedules
    result = conn.execute(
        sa.update(s).where(s.c.namespace == namespace, s.c.schedule_id == schedule_id,
                           s.c.version == version)
        .values(version=version + 1, **values))
    return result.rowcount == 1


def delete(conn: sa.Connection, namespace: str, schedule_id: str) -> bool:
    s, a = t.schedules, t.schedule_actions
    conn.execute(sa.delete(a).where(a.c.namespace == namespace, a.c.schedule_id == schedule_id))
    result = conn.execute(sa.delete(s).where(s.c.namespace == namespace,
                                             s.c.schedule_id == schedule_id))
    return result.rowcount == 1


def list_all(conn: sa.Connection, namespace: str) -> Sequence[sa.Row[Any]]:
    """Every schedule of a namespace, by id."""
    s = t.schedules
    return conn.execute(sa.select(s).where(s.c.namespace == namespace)
                        .order_by(s.c.schedule_id)).all()


def acted_at_second(conn: sa.Connection, namespace: str, schedule_id: str,
                    nominal_ms: int) -> bool:
    """Whether the schedule already acted for this nominal time (to the second): a backfill
    overlapping an earlier one, or a retried trigger, starts nothing twice."""
    a = t.schedule_actions
    second = nominal_ms // 1000 * 1000
    return conn.execute(
        sa.select(a.c.id).where(a.c.namespace == namespace, a.c.schedule_id == schedule_id,
                                a.c.nominal_ms >= second, a.c.nominal_ms < second + 1000)
        .limit(1)).first() is not None


def add_action(conn: sa.Connection, values: dict[str, Any]) -> None:
    """Record an action and forget the oldest beyond the ones kept."""
    a = t.schedule_actions
    conn.execute(sa.insert(a).values(**values))
    cutoff = conn.execute(
        sa.select(a.c.id).where(a.c.namespace == values["namespace"],
                                a.c.schedule_id == values["schedule_id"])
        .order_by(a.c.id.desc()).offset(_KEEP_ACTIONS).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(sa.delete(a).where(a.c.namespace == values["namespace"],
                                        a.c.schedule_id == values["schedule_id"],
                                        a.c.id <= cutoff))


def recent_actions(conn: sa.Connection, namespace: str, schedule_id: str,
                   limit: int = 10) -> list[sa.Row[Any]]:
    """The latest actions, oldest first, each with its run's status (None if the run is gone)."""
    a, r = t.schedule_actions, t.runs
    rows = conn.execute(
        sa.select(a, r.c.status).select_from(a.outerjoin(r, r.c.run_id == a.c.run_id))
        .where(a.c.namespace == namespace, a.c.schedule_id == schedule_id)
        .order_by(a.c.id.desc()).limit(limit)).all()
    return list(reversed(rows))


def run_statuses(conn: sa.Connection, run_ids: Iterable[str]) -> dict[str, int]:
    """The status of each existing run."""
    ids = list(run_ids)
    if not ids:
        return {}
    r = t.runs
    return {row.run_id: row.status for row in
            conn.execute(sa.select(r.c.run_id, r.c.status).where(r.c.run_id.in_(ids)))}


def recent_outcomes(conn: sa.Connection, namespace: str, schedule_id: str,
                    statuses: Iterable[int]) -> Sequence[sa.Row[Any, Any]]:
    """The closed runs of the schedule's kept actions with one of ``statuses``, newest first:
    their status and close event."""
    a, r = t.schedule_actions, t.runs
    return conn.execute(
        sa.select(r.c.status, r.c.close_event).select_from(a.join(r, r.c.run_id == a.c.run_id))
        .where(a.c.namespace == namespace, a.c.schedule_id == schedule_id,
               r.c.status.in_(list(statuses)))
        .order_by(a.c.id.desc())).all()
