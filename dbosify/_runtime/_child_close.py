"""Telling a parent run that its child closed for good (DESIGN §9.5: events for a run are
written by whoever produces them, in one transaction).

A child's final close (completed, failed, cancelled, terminated, timed out; not a continue-as-new,
retry or cron continuation) writes a ``child_closed`` event into the parent's inbox, in the same
transaction as the close itself, so a parent never misses nor sees twice how its child ended.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify._store._store import Store

CHILD_CLOSED = "child_closed"
"""Inbox kind of a child's final close, written to its parent's inbox."""


def notify_parent(store: Store, conn: sa.Connection, row: Any, close_event: bytes) -> str | None:
    """Tell a child's parent that the child closed for good (inside the close's transaction).
    Returns the parent's run id (to wake after the commit), or None for a run with no parent."""
    parent = getattr(row, "parent_run_id", None)
    if not parent:
        return None
    payload = json.dumps({"first_run": row.first_execution_run_id, "run": row.run_id,
                          "event": base64.b64encode(close_event).decode()}).encode()
    # Keyed by the child's chain: a close written twice (a retried statement) counts once.
    store.append_inbox(parent, CHILD_CLOSED, payload,
                       f"{CHILD_CLOSED}/{row.first_execution_run_id}", conn=conn)
    return str(parent)


def notify_parent_of(store: Store, conn: sa.Connection, run_id: str,
                     close_event: bytes) -> str | None:
    """:func:`notify_parent` for a run known by its id only (a termination, a timeout)."""
    row = conn.execute(sa.select(t.runs.c.run_id, t.runs.c.parent_run_id,
                                 t.runs.c.first_execution_run_id)
                       .where(t.runs.c.run_id == run_id)).first()
    return notify_parent(store, conn, row, close_event) if row is not None else None
