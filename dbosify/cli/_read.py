"""Read-only commands on the database, without DBOS or the engine.

``dbosify runs`` and ``dbosify result`` answer from the visibility rows (``dbosify_runs``) and a
run's close event, which dbosify writes with the close; ``dbosify show`` builds the history from
the run's row and its records in DBOS's tables, read directly (``dbosify._store._dbos_tables``).
A SQLAlchemy engine, temporalio's protos and its payload converter are all they import, so they
answer well within a second. The rows are the very ones the notebook's ``runs_frame`` and
``history_frame`` show (:func:`dbosify.history.run_row`, :func:`dbosify.history.history_rows`);
tests hold them equal.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from temporalio.api.enums.v1 import WorkflowExecutionStatus

from dbosify.cli._common import (
    CommandError,
    Progress,
    data_converter,
    database,
    run,
    usage,
)

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
    """Rows of the runs matching a visibility query, newest first.

    The same rows as :func:`dbosify.history.run_rows` (keys: its ``RUN_COLUMNS``; a test holds
    them equal), read straight from ``dbosify_runs``: building temporalio's
    ``WorkflowExecution`` objects would import its client and converter, half a second more.
    """
    from dbosify._store import _tables as t
    from dbosify._store._visibility import (
        VisibilityQueryError,
        compile_filter,
        referenced_attributes,
    )

    try:
        # Parsed before the database is opened: a mistyped query creates no embedded file.
        names = referenced_attributes(query or "")
    except VisibilityQueryError as err:
        raise usage(f"query {query!r}: {err}") from None
    engine = open_engine(database(database_url))
    try:
        with engine.connect() as conn:
            try:
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
            r = t.runs
            rows = conn.execute(
                sa.select(r.c.status, r.c.workflow_type, r.c.workflow_id, r.c.run_id,
                          r.c.build_id, r.c.start_time_ms, r.c.close_time_ms, r.c.task_queue)
                .where(r.c.namespace == namespace, compiled.where)
                .order_by(*compiled.order_by).limit(limit)).all()
    finally:
        engine.dispose()
    now = datetime.now(timezone.utc)
    out = []
    for row in rows:
        start = _time(row.start_time_ms)
        close = _time(row.close_time_ms) if row.close_time_ms is not None else None
        out.append({
            "status": WorkflowExecutionStatus.Name(row.status)
            .removeprefix("WORKFLOW_EXECUTION_STATUS_"),
            "type": row.workflow_type,
            "id": row.workflow_id,
            "run_id": row.run_id,
            "version": row.build_id or None,
            "start": start,
            "close": close,
            "duration": (close or now) - start,
            "task_queue": row.task_queue,
        })
    out.sort(key=lambda row: row["start"], reverse=True)
    return out


RUN_COLUMNS = ("status", "type", "id", "run_id", "version", "start", "close", "duration",
               "task_queue")
"""Keys of a run row, as :data:`dbosify.history.RUN_COLUMNS` (a test holds them equal)."""


def _run_row(conn: sa.Connection, namespace: str, workflow_id: str, run_id: str) -> Any:
    """The run ``run_id`` of ``workflow_id``, else its newest (a running one first), as the
    service finds it; an unknown id is one line, exit 1."""
    from dbosify._store import _tables as t

    r = t.runs
    stmt = sa.select(r).where(r.c.namespace == namespace, r.c.workflow_id == workflow_id)
    stmt = stmt.where(r.c.run_id == run_id) if run_id else stmt.order_by(
        (r.c.status == _RUNNING).desc(), r.c.start_time_ms.desc(), r.c.run_id.desc()).limit(1)
    row = conn.execute(stmt).first()
    if row is None:
        raise CommandError(f"no workflow with id {workflow_id!r}"
                           + (f" and run id {run_id!r}" if run_id else "")
                           + "; `dbosify runs` lists them")
    return row


_RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
_FINAL_WAIT_S = 2.0


def history(database_url: str | None, workflow_id: str, run_id: str,
            namespace: str = "default") -> list[dict[str, Any]]:
    """The rows of a run's history (keys: :data:`dbosify.history.HISTORY_COLUMNS`), the same
    as ``fetch_history()`` through the client gives, built from the records read directly."""
    import os

    from dbosify._store._dbos_tables import DbosTablesError, read_dbos_run
    from dbosify.history._rows import history_rows
    from dbosify.history._run import run_records

    engine = open_engine(database(database_url))
    try:
        with engine.connect() as conn:
            row = _run_row(conn, namespace, workflow_id, run_id)
        deadline = time.monotonic() + _FINAL_WAIT_S
        while True:
            with engine.connect() as conn:
                try:
                    dbos = read_dbos_run(conn, row.run_id)
                except DbosTablesError as err:
                    raise CommandError(str(err)) from None
            # Without close records the last completion is the DBOS workflow's output, written
            # just after the row is closed: give it a moment, as the service does.
            if (row.close_records or not dbos.pending or row.status == _RUNNING
                    or time.monotonic() >= deadline):
                break
            time.sleep(0.02)
    finally:
        engine.dispose()
    records = run_records(row, dbos.step_outputs, dbos.workflow_output, dbos.first_completion)
    events = records.history(f"dbosify-cli@{os.uname().nodename}")
    return run(history_rows(events, data_converter()))


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


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
    its failure's message. Waits for a running run, up to ``timeout`` seconds; meanwhile, on a
    terminal, a bar shows its activities done of those scheduled (as the notebook's
    ``ProgressBar`` does), refreshed every second."""
    from temporalio.api.history.v1 import HistoryEvent

    engine = open_engine(database(database_url))
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = Progress(f"waiting for {workflow_id}")
    shown_at = 0.0
    try:
        while True:
            with engine.connect() as conn:
                row = _run_row(conn, namespace, workflow_id, run_id)
                if row.status != _RUNNING and row.close_event:
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
                if sys.stderr.isatty() and time.monotonic() - shown_at >= 1.0:
                    if not shown_at:
                        print(f"waiting for {workflow_id!r} (Ctrl-C stops waiting, not the "
                              "run)", file=sys.stderr)
                    shown_at = time.monotonic()
                    done, scheduled = activity_counts(conn, row)
                    waiting.step(done, max(scheduled, 1))
            time.sleep(0.1)
    finally:
        waiting.__exit__(None, None, None)
        engine.dispose()


_ACTIVITY_CLOSED = ("activity_task_completed_event_attributes",
                    "activity_task_failed_event_attributes",
                    "activity_task_timed_out_event_attributes",
                    "activity_task_canceled_event_attributes")


def activity_counts(conn: sa.Connection, row: Any) -> tuple[int, int]:
    """``(done, scheduled)``: the activities of a run that finished, of those it scheduled."""
    from dbosify._store._dbos_tables import DbosTablesError, read_dbos_run
    from dbosify.history._run import run_records

    try:
        dbos = read_dbos_run(conn, row.run_id)
    except DbosTablesError:
        return 0, 0  # not there yet: the bar waits for the next look
    records = run_records(row, dbos.step_outputs, dbos.workflow_output, dbos.first_completion)
    kinds: list[str] = [e.WhichOneof("attributes") or "" for e in records.history("")]
    return (sum(kinds.count(k) for k in _ACTIVITY_CLOSED),
            kinds.count("activity_task_scheduled_event_attributes"))


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
