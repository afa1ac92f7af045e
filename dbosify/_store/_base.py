"""What every part of the store stands on: the database's engine, transactions, and the
wake-ups other processes listen for."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from temporalio.api.enums.v1 import WorkflowExecutionStatus

from dbosify._store import _clock
from dbosify._store._database import DatabaseURL, create_engine

RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
_NOTIFY = sa.text("SELECT pg_notify('dbosify', :m)")


def now_ms() -> int:
    """Epoch milliseconds, the unit of every time dbosify stores (wall time, plus what a
    time-skipping test environment skipped: dbosify._store._clock)."""
    return _clock.now_ms()



def versions_allowed(table: sa.Table, builds: Sequence[tuple[str, str]]
                      ) -> sa.ColumnElement[bool]:
    """Rows a worker with these (task queue, build id) pairs may take: unversioned ones, and
    those pinned to a build id it has on their task queue (Temporal's worker versioning)."""
    pinned = [sa.and_(table.c.task_queue == queue, table.c.build_id == build)
              for queue, build in builds]
    return sa.or_(table.c.build_id.is_(None), *pinned)


class StoreBase:
    """One database's engine (SQLite file or Postgres), shared by the parts of the store."""

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
