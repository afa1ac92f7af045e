"""Read-only commands on dbosify's own tables, without DBOS or the engine.

``dbosify runs`` and ``dbosify result`` answer from the visibility rows (``dbosify_runs``) and a
run's close event, which dbosify writes with the close: a SQLAlchemy engine, temporalio's protos
and its payload converter are all they import, so they answer well within a second. The rows are
the very ones the notebook's ``runs_frame`` shows (:func:`dbosify.history.run_row`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dbosify.cli._common import CommandError, data_converter, database, run, usage

if TYPE_CHECKING:
    from temporalio.api.history.v1 import HistoryEvent

    from dbosify._store._database import DatabaseURL


def open_engine(db: DatabaseURL) -> sa.Engine:
    """dbosify's tables on ``db``; an unreachable database is one line, exit 1."""
    from dbosify._exceptions import DatabaseError
    from dbosify._store._database import create_engine

    try:
        return create_engine(db)
    except DatabaseError as err:
        raise CommandError(str(err)) from None


def run_rows(database_url: str | None, query: str | None, limit: int,
             namespace: str = "default") -> list[dict[str, Any]]:
    """Rows of the runs matching a visibility query, newest first (keys: RUN_COLUMNS)."""
    import temporalio.client

    from dbosify._service._describe import execution_info
    from dbosify._store import _tables as t
    from dbosify._store._visibility import (
        VisibilityQueryError,
        compile_filter,
        referenced_attributes,
    )
    from dbosify.history._rows import run_row

    engine = open_engine(database(database_url))
    try:
        with engine.connect() as conn:
            try:
                names = referenced_attributes(query or "")
                sat = t.search_attributes
                types: dict[str, str] = {}
                if names:
                    for name, kind in conn.execute(
                            sa.select(sat.c.name, sat.c.type)
                            .where(sat.c.name.in_(sorted(names))).distinct()):
                        types.setdefault(name, kind)
                compiled = compile_filter(query or "", types)
            except VisibilityQueryError as err:
                raise usage(f"query {query!r}: {err}") from None
            if compiled.group_by:
                raise usage("GROUP BY is only allowed in a count query")
            rows = conn.execute(
                sa.select(t.runs).where(t.runs.c.namespace == namespace, compiled.where)
                .order_by(*compiled.order_by).limit(limit)).all()
            attrs: dict[str, list[Any]] = {r.run_id: [] for r in rows}
            if rows:
                for a in conn.execute(sa.select(sat).where(
                        sat.c.run_id.in_(list(attrs)))):
                    attrs[a.run_id].append(a)
    finally:
        engine.dispose()
    now = datetime.now(timezone.utc)
    converter = data_converter()
    return [run_row(temporalio.client.WorkflowExecution._from_raw_info(
        execution_info(r, attrs[r.run_id]), namespace, converter), now) for r in rows]


_CLOSED_FIELDS = {
    "workflow_execution_completed_event_attributes": "completed",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_canceled_event_attributes": "canceled",
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_timed_out_event_attributes": "timed out",
    "workflow_execution_continued_as_new_event_attributes": "continued as new",
}


def result(database_url: str | None, workflow_id: str, run_id: str, timeout: float | None,
           namespace: str = "default") -> tuple[bool, Any]:
    """``(ok, value)``: the result of a run (its latest run, following continue-as-new), or
    its failure's message. Waits for a running run, up to ``timeout`` seconds."""
    from temporalio.api.history.v1 import HistoryEvent

    from dbosify._store import _tables as t
    from dbosify._store._store import RUNNING

    engine = open_engine(database(database_url))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                stmt = sa.select(t.runs).where(t.runs.c.namespace == namespace,
                                               t.runs.c.workflow_id == workflow_id)
                stmt = stmt.where(t.runs.c.run_id == run_id) if run_id else stmt.order_by(
                    (t.runs.c.status == RUNNING).desc(), t.runs.c.start_time_ms.desc()).limit(1)
                row = conn.execute(stmt).first()
            if row is None:
                raise CommandError(f"no workflow with id {workflow_id!r}"
                                   + (f" and run id {run_id!r}" if run_id else "")
                                   + "; `dbosify runs` lists them")
            if row.status != RUNNING and row.close_event:
                event = HistoryEvent.FromString(row.close_event)
                field = event.WhichOneof("attributes") or ""
                if field == "workflow_execution_continued_as_new_event_attributes":
                    run_id = event.workflow_execution_continued_as_new_event_attributes \
                        .new_execution_run_id
                    continue
                return run(_outcome(event, field))
            if deadline is not None and time.monotonic() >= deadline:
                raise CommandError(f"workflow {workflow_id!r} is still running after "
                                   f"{timeout:g}s")
            time.sleep(0.1)
    finally:
        engine.dispose()


async def _outcome(event: HistoryEvent, field: str) -> tuple[bool, Any]:
    attrs: Any = getattr(event, field)
    converter = data_converter()
    if field == "workflow_execution_completed_event_attributes":
        values = await converter.decode(list(attrs.result.payloads)) \
            if attrs.result.payloads else []
        return True, values[0] if len(values) == 1 else (values or None)
    if field == "workflow_execution_failed_event_attributes":
        failure = await converter.decode_failure(attrs.failure)
        cause = failure.__cause__
        message = str(failure) + (f": {cause}" if cause is not None else "")
        return False, f"failed: {message}"
    if field == "workflow_execution_terminated_event_attributes":
        return False, f"terminated: {attrs.reason or 'no reason given'}"
    return False, _CLOSED_FIELDS.get(field, field)
