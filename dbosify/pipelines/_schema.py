"""Schema: column types taken from the rows, grown as new columns appear, checked for conflicts."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from temporalio.exceptions import ApplicationError

Row = dict[str, Any]
"""One record: column name to value."""

Schema = dict[str, str]
"""Column name to logical type, in column order. Types: ``bigint``, ``double``, ``boolean``,
``text``, ``timestamp``, ``date``, ``json``, and ``null`` for a column whose values were all
null so far (it fits any column; a new table makes it ``text``)."""

TYPES = ("bigint", "double", "boolean", "text", "timestamp", "date", "json")

# Which logical types a column of a given type accepts (a widening, never a narrowing).
_ACCEPTS: dict[str, frozenset[str]] = {
    "bigint": frozenset({"bigint", "null"}),
    "double": frozenset({"double", "bigint", "null"}),
    "boolean": frozenset({"boolean", "null"}),
    "text": frozenset({"text", "null"}),
    "timestamp": frozenset({"timestamp", "null"}),
    "date": frozenset({"date", "null"}),
    "json": frozenset({"json", "null"}),
    "null": frozenset({*TYPES, "null"}),
}


class SchemaConflictError(ApplicationError):
    """A batch's value does not fit the column's type: the run stops, the cursor stays where it
    was, and nothing of the batch is written. Not retried (the same rows would fail again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="SchemaConflict", non_retryable=True)


def value_type(value: Any) -> str | None:
    """The logical type of one value (None for a null, which fits any column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, (float, Decimal)):
        return "double"
    if isinstance(value, (str, uuid.UUID, datetime.time)):
        return "text"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, (dict, list, tuple)):
        return "json"
    raise SchemaConflictError(
        f"cannot store a value of type {type(value).__name__} ({value!r:.60}): convert it to "
        "a number, string, boolean, date, datetime, dict or list in the source")


def infer(rows: Iterable[Mapping[str, Any]], where: str = "the batch") -> Schema:
    """The columns of ``rows`` with their types, in first-seen order. A column holding two
    incompatible types (say numbers and strings) is a :class:`SchemaConflictError`; integers
    and floats together make ``double``. A column whose values are all null is ``null``."""
    schema: dict[str, str | None] = {}
    for row in rows:
        for column, value in row.items():
            kind = value_type(value)
            known = schema.get(column)
            if column not in schema or known is None:
                schema[column] = kind
            elif kind is not None and kind != known:
                schema[column] = _widen(column, known, kind, where)
    return {c: (t or "null") for c, t in schema.items()}


def _widen(column: str, a: str, b: str, where: str) -> str:
    if {a, b} == {"bigint", "double"}:
        return "double"
    raise SchemaConflictError(
        f"column {column!r} holds both {a} and {b} values in {where}: make the source produce "
        "one type for it (or convert the values before they reach the sink)")


def evolve(existing: Mapping[str, str], batch: Mapping[str, str], sink: str) -> list[str]:
    """The columns of ``batch`` that ``existing`` lacks (to be added), after checking that
    every shared column's type accepts the batch's. A conflict names the column, both types
    and the sink, and is raised before anything is written."""
    new: list[str] = []
    for column, kind in batch.items():
        have = existing.get(column)
        if have is None:
            new.append(column)
        elif kind not in _ACCEPTS.get(have, frozenset({have, "null"})):
            raise SchemaConflictError(
                f"column {column!r} of {sink} is {have}, but the batch brings {kind} values: "
                f"convert the column in the source, or write to a new table; nothing of this "
                "batch was written and the cursor did not move")
    return new


def normalise(value: Any, kind: str) -> Any:
    """A value ready for a driver: JSON for ``json`` columns, floats for ``double``."""
    if value is None or kind == "null":
        return value
    if kind == "json":
        return json.dumps(value, default=str)
    if kind == "double" and not isinstance(value, float):
        return float(value)
    if kind == "text" and not isinstance(value, str):
        return str(value)
    return value


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column name in ``rows``, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for column in row:
            seen.setdefault(column, None)
    return list(seen)
