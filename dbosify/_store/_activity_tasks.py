"""Activity attempts offered to the workers of other processes, attempts held for outside
completion, and the heartbeat details an activity's next attempt sees."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify._store._base import now_ms, versions_allowed
from dbosify._store._inbox import InboxRows

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


class ActivityTaskRows(InboxRows):
    """Activity attempts and heartbeat details (an attempt's outcome goes to its run's inbox)."""

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
                                        versions_allowed(at, builds)).order_by(at.c.id)
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
