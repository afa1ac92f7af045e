"""A run's DBOS records read straight from DBOS's tables, for ``dbosify show``.

Why not DBOS's API (DESIGN §2 asks for it): importing DBOS takes a second on this machine, so a
read-only command that goes through ``DBOSClient`` cannot answer within one (issue 12 §4). This
module reads the three things dbosify keeps in DBOS (the outputs of a run's event steps, its DBOS
workflow's inputs and its output) with SQLAlchemy alone. It therefore depends on DBOS 3.4's
internals: the tables and columns of ``dbos/_schemas/system_database.py`` (in schema ``dbos`` on
Postgres, in the same file on SQLite), ``dbos/_sys_db.py``'s reads of them (a value in
``workflow_input``/``workflow_output`` wins over the one in ``workflow_status``) and the
serializations of ``dbos/_serialization.py``. tests/_store/test_dbos_tables.py builds the history
of real runs both ways, through this module and through DBOS's client, and fails when they part.

The engine and the service keep using DBOS's API; nothing here writes.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dbosify._records import EVENT_STEP

DBOS_POSTGRES_SCHEMA = "dbos"
"""DBOS's schema on Postgres (its default ``dbos_system_schema``, which dbosify keeps)."""


class DbosTablesError(Exception):
    """DBOS's tables hold something this dbosify cannot read (a DBOS version it does not know)."""


@dataclass(frozen=True)
class DbosRunRecords:
    """What a run's DBOS workflow holds, as ``dbosify.history._run.run_records`` takes it."""

    step_outputs: list[dict[str, Any]] = field(default_factory=list)
    """The outputs of the run's event steps, in order."""
    workflow_output: Any = None
    first_completion: str | None = None
    pending: bool = False
    """The DBOS workflow has not ended (its output may be on its way)."""


def _tables(schema: str | None) -> tuple[sa.Table, sa.Table, sa.Table, sa.Table]:
    # Only the columns read here: a column DBOS adds changes nothing, one it drops or renames
    # fails the query (and the test).
    meta = sa.MetaData(schema=schema)
    status = sa.Table("workflow_status", meta, sa.Column("workflow_uuid", sa.Text),
                      sa.Column("status", sa.Text), sa.Column("inputs", sa.Text),
                      sa.Column("output", sa.Text), sa.Column("serialization", sa.Text))
    inputs = sa.Table("workflow_input", meta, sa.Column("workflow_uuid", sa.Text),
                      sa.Column("inputs", sa.Text))
    outputs = sa.Table("workflow_output", meta, sa.Column("workflow_uuid", sa.Text),
                       sa.Column("output", sa.Text))
    steps = sa.Table("operation_outputs", meta, sa.Column("workflow_uuid", sa.Text),
                     sa.Column("function_id", sa.Integer), sa.Column("function_name", sa.Text),
                     sa.Column("output", sa.Text), sa.Column("serialization", sa.Text))
    return status, inputs, outputs, steps


def read_dbos_run(conn: sa.Connection, run_id: str) -> DbosRunRecords:
    """The DBOS records of run ``run_id`` (its DBOS workflow id); empty when it has no DBOS
    workflow yet (no worker has taken it) or the database has no DBOS tables at all."""
    schema = DBOS_POSTGRES_SCHEMA if conn.dialect.name == "postgresql" else None
    status, inputs, outputs, steps = _tables(schema)
    if not sa.inspect(conn).has_table("workflow_status", schema=schema):
        return DbosRunRecords()
    try:
        found = conn.execute(
            sa.select(status.c.status,
                      sa.func.coalesce(inputs.c.inputs, status.c.inputs),
                      sa.func.coalesce(outputs.c.output, status.c.output),
                      status.c.serialization)
            .select_from(status
                         .outerjoin(inputs, inputs.c.workflow_uuid == status.c.workflow_uuid)
                         .outerjoin(outputs, outputs.c.workflow_uuid == status.c.workflow_uuid))
            .where(status.c.workflow_uuid == run_id)).first()
        rows = conn.execute(
            sa.select(steps.c.output, steps.c.serialization)
            .where(steps.c.workflow_uuid == run_id, steps.c.function_name == EVENT_STEP,
                   steps.c.output.is_not(None))
            .order_by(steps.c.function_id)).all()
    except sa.exc.DBAPIError as err:
        raise DbosTablesError(
            f"cannot read DBOS's tables ({str(err.orig).splitlines()[0]}): was the database "
            "written by a DBOS version this dbosify does not know?") from None
    if found is None:
        return DbosRunRecords()
    state, raw_inputs, raw_output, serialization = found
    decoded = _decode(raw_inputs, serialization) if raw_inputs is not None else None
    args: tuple[Any, ...] = tuple(decoded.get("args", ())) if isinstance(decoded, dict) else ()
    # The first activation's completion is the DBOS workflow's second argument (record format
    # 2; older runs have only the run id).
    first = args[1] if len(args) > 1 and isinstance(args[1], str) else None
    return DbosRunRecords(
        step_outputs=[_decode(output, kind) for output, kind in rows],
        workflow_output=_decode(raw_output, serialization) if raw_output is not None else None,
        first_completion=first,
        pending=state == "PENDING")


def _decode(text: str, serialization: str | None) -> Any:
    """A value as DBOS stored it: its default serializer (``py_pickle``, also what an unnamed
    serialization means, as dbosify configures no other) or ``portable_json``."""
    if serialization in (None, "py_pickle"):
        try:
            return _PlainUnpickler(io.BytesIO(base64.b64decode(text))).load()
        except Exception as err:
            raise DbosTablesError(f"cannot decode a value DBOS stored: {err}") from None
    if serialization == "portable_json":
        value = json.loads(text)
        if isinstance(value, dict) and "positionalArgs" in value:  # Portable inputs.
            return {"args": tuple(value.get("positionalArgs") or ()),
                    "kwargs": value.get("namedArgs") or {}}
        return value
    raise DbosTablesError(f"DBOS stored a value with serialization {serialization!r}, which "
                          "this dbosify does not know")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, tuples, strings, numbers): all dbosify stores in
    DBOS. Reading never runs code named by the database."""

    def find_class(self, module: str, name: str) -> Any:
        raise DbosTablesError(f"a value DBOS stored names {module}.{name}; dbosify stores only "
                              "plain data there")
