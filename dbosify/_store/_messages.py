"""Updates' stages and outcomes, and queries asked of the process that drives a run."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dbosify._store import _tables as t
from dbosify._store._base import StoreBase, now_ms


class MessageRows(StoreBase):
    """Updates and queries across processes."""

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

    def answer_query(self, query_id: int, answer: bytes, run_id: str) -> None:
        """Answer a query (the asker is woken by NOTIFY or its poll)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.queries).where(t.queries.c.id == query_id)
                         .values(answer=answer))
            self._notify(conn, f"answer:{query_id}")
