"""Temporal's visibility queries, compiled to SQLAlchemy Core against dbosify's ``runs`` table.

``client.list_workflows(query)`` and ``client.count_workflows(query)`` take Temporal's List Filter
language; :func:`compile_filter` turns one into a WHERE clause, an ORDER BY list and (for counts) a
GROUP BY list, every value a bound parameter. The caller scopes the namespace and pages::

    types = load_types(referenced_attributes(query))   # name -> "Keyword", "Int", ...
    f = compile_filter("WorkflowType = 'Order' AND CustomerId IN ('a', 'b')", types)
    rows = conn.execute(sa.select(runs).where(runs.c.namespace == ns, f.where).order_by(*f.order_by))

    f = compile_filter("TaskQueue = 'q' GROUP BY ExecutionStatus", types)
    sa.select(*f.group_by, sa.func.count()).where(f.where).group_by(*f.group_by)

Fields:

* Built-in: ``WorkflowId``, ``WorkflowType``, ``RunId``, ``TaskQueue``, ``ParentWorkflowId``,
  ``ParentRunId`` (Keyword); ``ExecutionStatus`` (values ``'Running'``, ``'Completed'``,
  ``'Failed'``, ``'Canceled'``, ``'Terminated'``, ``'ContinuedAsNew'``, ``'TimedOut'``,
  ``'Paused'``); ``StartTime``, ``ExecutionTime``, ``CloseTime`` (Datetime); ``HistoryLength`` (Int).
* Custom search attributes of every Temporal type, looked up in the ``search_attributes`` table.

Values: Keyword, Text and KeywordList take strings; Int and Double take numbers; Bool takes TRUE or
FALSE; Datetime takes an RFC 3339 / ISO 8601 string (``'2024-05-01T12:00:00.250+02:00'``; no offset
means UTC) or an integer of Unix nanoseconds, as Temporal does, compared at millisecond resolution.

Semantics where a backend of Temporal's own would differ, chosen to be the same on SQLite and
Postgres:

* A condition on a value a run doesn't have (a custom attribute it never set, CloseTime while
  running) is false, and ``NOT`` turns it true: logic is two-valued, as in Elasticsearch. So
  ``Color != 'red'`` matches only runs that have a Color, while ``NOT Color = 'red'`` also matches
  runs without one. Use ``IS NULL`` / ``IS NOT NULL`` to ask about presence.
* KeywordList: ``=`` means "contains", ``IN`` "contains any", ``!=`` / ``NOT IN`` "has the attribute
  and contains none of them".
* Text ``=`` is a word match, like Temporal's full-text search: every word of the value (split at
  whitespace and punctuation other than ``_``, compared case-insensitively for ASCII letters) must be
  a word of the attribute. ``Description = 'foobar'`` matches ``'my-business-id-foobar'``.
* A running run has no CloseTime (Temporal's SQL store would compare it as the far future): only
  ``CloseTime IS NULL`` matches it.
* ORDER BY sorts missing values as the largest (first for DESC, last for ASC), then by run id; a
  custom name no run has set is ignored there.
* Keyword ordering (``<``, ``BETWEEN``, ``ORDER BY``) follows the database's collation.
* Without ORDER BY, results come newest first: ``StartTime DESC``, then run id.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from temporalio.api.enums.v1 import WorkflowExecutionStatus

from dbosify._store._tables import runs, search_attributes
from dbosify._store._visibility_parse import (
    And,
    Between,
    Comparison,
    Expr,
    Field,
    InList,
    IsNull,
    Not,
    Or,
    Query,
    StartsWith,
    Value,
    VisibilityQueryError,
    parse_query,
)

__all__ = [
    "EXECUTION_STATUS_NAMES",
    "CompiledFilter",
    "VisibilityQueryError",
    "compile_filter",
    "execution_status_name",
    "parse_query",
    "referenced_attributes",
]

_S = WorkflowExecutionStatus
EXECUTION_STATUS_NAMES: Mapping[str, int] = {
    "Running": int(_S.WORKFLOW_EXECUTION_STATUS_RUNNING),
    "Completed": int(_S.WORKFLOW_EXECUTION_STATUS_COMPLETED),
    "Failed": int(_S.WORKFLOW_EXECUTION_STATUS_FAILED),
    "Canceled": int(_S.WORKFLOW_EXECUTION_STATUS_CANCELED),
    "Terminated": int(_S.WORKFLOW_EXECUTION_STATUS_TERMINATED),
    "ContinuedAsNew": int(_S.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW),
    "TimedOut": int(_S.WORKFLOW_EXECUTION_STATUS_TIMED_OUT),
    "Paused": int(_S.WORKFLOW_EXECUTION_STATUS_PAUSED),
}
"""ExecutionStatus names as queries write them, to the ``runs.status`` enum values."""

# Temporal also accepts the proto enum names (WORKFLOW_EXECUTION_STATUS_RUNNING) and numbers.
_STATUS_ALIASES: Mapping[str, int] = {
    **EXECUTION_STATUS_NAMES,
    **{_S.Name(v): v for v in EXECUTION_STATUS_NAMES.values()},  # type: ignore[arg-type]
}
_STATUS_BY_INT = {v: k for k, v in EXECUTION_STATUS_NAMES.items()}


def execution_status_name(status: int) -> str:
    """The query name of a ``runs.status`` value (for GROUP BY ExecutionStatus results)."""
    return _STATUS_BY_INT.get(status, "Unspecified")


@dataclass(frozen=True)
class CompiledFilter:
    """A compiled query: SQLAlchemy expressions over ``runs``, with every value bound.

    ``where`` is ``true()`` for an empty query. ``group_by`` is ``(runs.c.status,)`` for a
    ``GROUP BY ExecutionStatus`` query, which only counts accept (Temporal's listing refuses
    GROUP BY); ``order_by`` is then ``(runs.c.status,)`` so counts come in a stable order.
    """

    where: sa.ColumnElement[bool]
    order_by: tuple[sa.ColumnElement[Any], ...]
    group_by: tuple[sa.ColumnElement[Any], ...] = ()
    group_by_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Builtin:
    column: sa.Column[Any]
    type: str  # a search attribute type name, or "ExecutionStatus"
    nullable: bool = False


_BUILTINS: Mapping[str, _Builtin] = {
    "WorkflowId": _Builtin(runs.c.workflow_id, "Keyword"),
    "WorkflowType": _Builtin(runs.c.workflow_type, "Keyword"),
    "RunId": _Builtin(runs.c.run_id, "Keyword"),
    "TaskQueue": _Builtin(runs.c.task_queue, "Keyword"),
    "ExecutionStatus": _Builtin(runs.c.status, "ExecutionStatus"),
    "StartTime": _Builtin(runs.c.start_time_ms, "Datetime"),
    "ExecutionTime": _Builtin(runs.c.execution_time_ms, "Datetime"),
    "CloseTime": _Builtin(runs.c.close_time_ms, "Datetime", nullable=True),
    "HistoryLength": _Builtin(runs.c.history_length, "Int"),
    "ParentWorkflowId": _Builtin(runs.c.parent_workflow_id, "Keyword", nullable=True),
    "ParentRunId": _Builtin(runs.c.parent_run_id, "Keyword", nullable=True),
}

# Temporal system attributes dbosify keeps no record of. Matching nothing would hide the mistake,
# so they are an error -- unless a run did store one as a custom attribute.
_UNRECORDED_SYSTEM = frozenset({
    "ExecutionDuration", "HistorySizeBytes", "StateTransitionCount", "TemporalChangeVersion",
    "BinaryChecksums", "BuildIds", "BatcherUser", "BatcherNamespace", "TemporalNamespaceDivision",
    "RootWorkflowId", "RootRunId", "TemporalScheduledStartTime", "TemporalScheduledById",
    "TemporalSchedulePaused", "TemporalWorkerDeployment", "TemporalWorkerDeploymentVersion",
    "TemporalWorkflowVersioningBehavior", "TemporalPauseInfo", "TemporalReportedProblems",
})

_VALUE_COLUMNS: Mapping[str, sa.Column[Any]] = {
    "Text": search_attributes.c.value_text,
    "Keyword": search_attributes.c.value_text,
    "KeywordList": search_attributes.c.value_text,
    "Int": search_attributes.c.value_int,
    "Double": search_attributes.c.value_double,
    "Bool": search_attributes.c.value_bool,
    "Datetime": search_attributes.c.value_time_ms,
}

_ORDERED = frozenset({"=", "!=", "<", "<=", ">", ">=", "IN", "BETWEEN"})
# The operators Temporal's server accepts for each type (query/converter.go), plus STARTS_WITH.
_SUPPORTED_OPS: Mapping[str, frozenset[str]] = {
    "Keyword": _ORDERED | {"STARTS_WITH"},
    "Text": frozenset({"=", "!="}),
    "KeywordList": frozenset({"=", "!=", "IN"}),
    "Int": _ORDERED,
    "Double": _ORDERED,
    "Datetime": _ORDERED,
    "Bool": frozenset({"=", "!=", "IN"}),
    "ExecutionStatus": frozenset({"=", "!=", "IN"}),
}

# Text words are split at whitespace and ASCII punctuation but '_', which stays inside words as in
# Unicode word segmentation.
_TEXT_SEPARATORS = " \t\n\r\x0b\x0c" + string.punctuation.replace("_", "")

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def referenced_attributes(query: str) -> set[str]:
    """The custom search attribute names ``query`` uses, so their types can be loaded first.

    Raises :class:`VisibilityQueryError` if the query doesn't parse.
    """
    parsed = parse_query(query)
    fields: list[Field] = [t.field for t in parsed.order_by] + list(parsed.group_by)
    pending: list[Expr] = [parsed.where] if parsed.where is not None else []
    while pending:
        node = pending.pop()
        if isinstance(node, (And, Or)):
            pending.extend(node.operands)
        elif isinstance(node, Not):
            pending.append(node.operand)
        else:
            fields.append(node.field)
    return {f.name for f in fields if f.name not in _BUILTINS}


def compile_filter(query: str, attribute_types: Mapping[str, str]) -> CompiledFilter:
    """Compile a List Filter query into SQLAlchemy expressions over ``runs``.

    ``attribute_types`` maps custom search attribute names to their type name (``"Text"``,
    ``"Keyword"``, ``"Int"``, ``"Double"``, ``"Bool"``, ``"Datetime"``, ``"KeywordList"``), as
    stored in the ``search_attributes`` table. A name missing from it matches nothing (and
    ``IS NULL`` on it matches everything): dbosify has no registry of attributes, so a name no
    run has set is simply one no run has, not an error as on a Temporal server.

    Raises :class:`VisibilityQueryError` for a syntax error, an unknown ExecutionStatus, a value of
    the wrong type, an operator the field's type doesn't support, or ORDER BY with GROUP BY.

    Example: ``compile_filter("ExecutionStatus = 'Running' AND Priority > 2", {"Priority": "Int"})``
    """
    return _Compiler(query, attribute_types).compile(parse_query(query))


@dataclass(frozen=True)
class _Target:
    """What a field name resolved to: a runs column, a custom attribute, or nothing known."""

    field: Field
    type: str | None  # None: a custom attribute no run has
    column: sa.Column[Any] | None = None  # the runs column of a built-in
    nullable: bool = False


class _Compiler:
    def __init__(self, query: str, attribute_types: Mapping[str, str]) -> None:
        self.query = query
        self.attribute_types = attribute_types

    def fail(self, pos: int, problem: str) -> VisibilityQueryError:
        return VisibilityQueryError(self.query, pos, problem)

    def compile(self, parsed: Query) -> CompiledFilter:
        where = sa.true() if parsed.where is None else self.expr(parsed.where)
        if parsed.group_by:
            for field in parsed.group_by:
                if field.name != "ExecutionStatus":
                    raise self.fail(field.pos, "GROUP BY supports only ExecutionStatus, found "
                                               f"{field.name}")
            if len(parsed.group_by) > 1:
                raise self.fail(parsed.group_by[1].pos, "GROUP BY takes a single field")
            return CompiledFilter(where, (runs.c.status,), (runs.c.status,), ("ExecutionStatus",))
        order_by: list[sa.ColumnElement[Any]] = []
        for term in parsed.order_by:
            key = self.order_key(term.field)
            if key is None:
                continue
            # Missing values sort as the largest, like Postgres's default and Temporal's
            # "CloseTime DESC NULLS FIRST"; said explicitly, since SQLite's default is the opposite.
            order_by.append(key.desc().nulls_first() if term.descending else key.asc().nulls_last())
        if not parsed.order_by:
            order_by.append(runs.c.start_time_ms.desc())
        # A total order, so pages never overlap or skip runs with equal keys.
        order_by.append(runs.c.run_id.asc())
        return CompiledFilter(where, tuple(order_by))

    # ------------------------------------------------------------------------- fields

    def resolve(self, field: Field) -> _Target:
        builtin = _BUILTINS.get(field.name)
        if builtin is not None:
            return _Target(field, builtin.type, builtin.column, builtin.nullable)
        type_name = self.attribute_types.get(field.name)
        if type_name is not None:
            if type_name not in _VALUE_COLUMNS:
                raise self.fail(field.pos, f"search attribute {field.name} has type "
                                           f"{type_name!r}, expected one of "
                                           f"{', '.join(_VALUE_COLUMNS)}")
            return _Target(field, type_name)
        if field.name in _UNRECORDED_SYSTEM:
            raise self.fail(field.pos, f"{field.name} is a Temporal system search attribute that "
                                       "dbosify does not record")
        for name in _BUILTINS:
            if name.lower() == field.name.lower():
                raise self.fail(field.pos, f"unknown search attribute {field.name} (names are "
                                           f"case-sensitive: did you mean {name}?)")
        return _Target(field, None)

    def order_key(self, field: Field) -> sa.ColumnElement[Any] | None:
        target = self.resolve(field)
        if target.column is not None:
            return target.column
        if target.type is None:
            return None  # no run has it: every key would be NULL
        if target.type in ("Text", "KeywordList"):
            raise self.fail(field.pos, f"can't ORDER BY {field.name}: a {target.type} search "
                                       "attribute has no single value to sort by")
        value_col = _VALUE_COLUMNS[target.type]
        # LIMIT 1 rather than an aggregate: Postgres has no min(boolean).
        return (sa.select(value_col).where(*self.attribute_rows(target)).limit(1)
                .correlate(runs).scalar_subquery())

    # -------------------------------------------------------------------- conditions

    def expr(self, node: Expr) -> sa.ColumnElement[bool]:
        if isinstance(node, And):
            return sa.and_(*(self.expr(o) for o in node.operands))
        if isinstance(node, Or):
            return sa.or_(*(self.expr(o) for o in node.operands))
        if isinstance(node, Not):
            return sa.not_(self.expr(node.operand))
        target = self.resolve(node.field)
        if isinstance(node, IsNull):
            return self.is_null(target, node.negated)
        op, negated = _operator(node)
        if target.type is None:
            return sa.false()
        if op not in _SUPPORTED_OPS[target.type]:
            shown = ("NOT " if negated else "") + op
            raise self.fail(node.field.pos, f"{shown} is not supported on {node.field.name}, a "
                                            f"{target.type} field (supported: "
                                            f"{', '.join(sorted(_SUPPORTED_OPS[target.type]))})")
        if target.column is not None:
            cond = self.value_condition(target, target.column, node)
            # Two-valued logic: a missing value fails the comparison instead of making it NULL.
            return sa.and_(target.column.is_not(None), cond) if target.nullable else cond
        if target.type == "KeywordList" and negated:
            # "Contains none of them": the run has the list, and no element matches.
            positive: InList | Comparison
            if isinstance(node, InList):
                positive = InList(node.field, node.values, negated=False)
            else:
                assert isinstance(node, Comparison)
                positive = Comparison(node.field, "=", node.value)
            has_match = self.exists(target, self.value_condition(target, _VALUE_COLUMNS["Keyword"],
                                                                 positive))
            return sa.and_(self.exists(target), sa.not_(has_match))
        return self.exists(target, self.value_condition(target, _VALUE_COLUMNS[target.type], node))

    def is_null(self, target: _Target, negated: bool) -> sa.ColumnElement[bool]:
        if target.column is not None:
            if not target.nullable:
                return sa.true() if negated else sa.false()
            return target.column.is_not(None) if negated else target.column.is_(None)
        if target.type is None:
            return sa.false() if negated else sa.true()
        # Presence of any value, whatever its stored type.
        rows = (sa.select(search_attributes.c.run_id)
                .where(search_attributes.c.run_id == runs.c.run_id,
                       search_attributes.c.name == target.field.name)
                .correlate(runs).exists())
        return rows if negated else sa.not_(rows)

    def attribute_rows(self, target: _Target) -> list[sa.ColumnElement[bool]]:
        sat = search_attributes
        # The type test keeps a value stored under another type (there is no registry to stop
        # that) out of a comparison whose literal was parsed for this one.
        return [sat.c.run_id == runs.c.run_id, sat.c.name == target.field.name,
                sat.c.type == target.type]

    def exists(self, target: _Target, *conds: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        return (sa.select(search_attributes.c.run_id)
                .where(*self.attribute_rows(target), *conds).correlate(runs).exists())

    def value_condition(self, target: _Target, col: sa.ColumnElement[Any],
                        node: Comparison | InList | Between | StartsWith) -> sa.ColumnElement[bool]:
        """The predicate on one value column, negation included (NOT IN, !=, NOT BETWEEN ...)."""
        assert target.type is not None
        type_name = target.type
        if isinstance(node, Comparison):
            value = self.literal(target, node.value)
            if type_name == "Text":
                assert isinstance(value, str)
                match = _text_match(col, value)
                return match if node.op == "=" else sa.not_(match)
            return _compare(col, node.op, _bind(value))
        if isinstance(node, InList):
            binds = [_bind(self.literal(target, v)) for v in node.values]
            return col.not_in(binds) if node.negated else col.in_(binds)
        if isinstance(node, Between):
            cond = col.between(_bind(self.literal(target, node.low)),
                               _bind(self.literal(target, node.high)))
            return sa.not_(cond) if node.negated else cond
        prefix = self.literal(target, node.prefix)
        assert isinstance(prefix, str)
        # LIKE lets an index narrow the rows (Postgres, C collation); substr() makes the test exact
        # and case-sensitive, which SQLite's LIKE is not.
        starts = sa.and_(col.startswith(prefix, autoescape=True),
                         sa.func.substr(col, 1, len(prefix)) == _bind(prefix))
        return sa.not_(starts) if node.negated else starts

    def literal(self, target: _Target, value: Value) -> str | int | float | bool:
        """``value`` as the field's type stores it, or an error naming what was expected."""
        raw, type_name, name = value.value, target.type, target.field.name
        is_number = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if type_name in ("Keyword", "Text", "KeywordList") and isinstance(raw, str):
            return raw
        if type_name == "Int" and is_number:
            return raw
        if type_name == "Double" and is_number:
            return float(raw)
        if type_name == "Bool" and isinstance(raw, bool):
            return raw
        if type_name == "Datetime":
            if isinstance(raw, str):
                return self.datetime_ms(value, raw)
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw // 1_000_000  # Temporal reads an integer as Unix nanoseconds
        if type_name == "ExecutionStatus":
            if isinstance(raw, str) and raw in _STATUS_ALIASES:
                return _STATUS_ALIASES[raw]
            if isinstance(raw, int) and not isinstance(raw, bool) and raw in _STATUS_BY_INT:
                return raw
            raise self.fail(value.pos, f"invalid ExecutionStatus {raw!r}: expected one of "
                                       f"{', '.join(repr(s) for s in EXECUTION_STATUS_NAMES)}")
        expected = {
            "Keyword": "a string", "Text": "a string", "KeywordList": "a string",
            "Int": "a number", "Double": "a number", "Bool": "TRUE or FALSE",
            "Datetime": "an RFC 3339 time string or Unix nanoseconds",
        }[str(type_name)]
        raise self.fail(value.pos, f"{name} is a {type_name} field: expected {expected}, found "
                                   f"{_describe(raw)}")

    def datetime_ms(self, value: Value, text: str) -> int:
        m = _DATETIME.fullmatch(text.strip())
        problem = f"invalid time {text!r}: expected RFC 3339, like '2024-05-01T12:00:00Z'"
        if m is None:
            raise self.fail(value.pos, problem)
        year, month, day, hour, minute, second, fraction, offset = m.groups()
        tz = timezone.utc
        if offset not in (None, "Z", "z"):
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = timezone(delta if offset[0] == "+" else -delta)
        try:
            moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                              int(second or 0), tzinfo=tz)
        except ValueError as e:
            raise self.fail(value.pos, f"{problem} ({e})") from None
        # Whole milliseconds: the resolution runs store; finer digits are dropped.
        millis = int((fraction or "0")[:3].ljust(3, "0"))
        return (moment - _EPOCH) // timedelta(milliseconds=1) + millis


def _operator(node: Comparison | InList | Between | StartsWith) -> tuple[str, bool]:
    """The operator's name for the support table, and whether it is the negated form."""
    if isinstance(node, Comparison):
        return node.op, node.op == "!="
    if isinstance(node, InList):
        return "IN", node.negated
    if isinstance(node, Between):
        return "BETWEEN", node.negated
    return "STARTS_WITH", node.negated


def _bind(value: str | int | float | bool) -> sa.BindParameter[Any]:
    # An explicit type per value: a float compared with an integer column must not be bound (and
    # rounded) as an integer.
    type_: sa.types.TypeEngine[Any]
    if isinstance(value, bool):
        type_ = sa.Boolean()
    elif isinstance(value, int):
        type_ = sa.BigInteger()
    elif isinstance(value, float):
        type_ = sa.Float()
    else:
        type_ = sa.Text()
    return sa.bindparam(None, value, type_=type_)


def _compare(col: sa.ColumnElement[Any], op: str, value: sa.BindParameter[Any]
             ) -> sa.ColumnElement[bool]:
    if op == "=":
        return col == value
    if op == "!=":
        return col != value
    if op == "<":
        return col < value
    if op == "<=":
        return col <= value
    if op == ">":
        return col > value
    return col >= value


def _words(text: str) -> list[str]:
    for sep in _TEXT_SEPARATORS:
        text = text.replace(sep, " ")
    return [w for w in text.lower().split(" ") if w]


class _WordIn(FunctionElement[bool]):
    """``padded`` (a lowered text between spaces) contains a word between two separators.

    LIKE has no character classes and SQLite's parser overflows on the ~36 nested replace() calls
    that would turn separators into spaces, so each database gets its own class-matching operator:
    GLOB on SQLite, a regular expression on Postgres. Both patterns are bound parameters.
    """

    type = sa.Boolean()
    inherit_cache = True
    name = "dbosify_word_in"


@compiles(_WordIn)
def _word_in_glob(element: _WordIn, compiler: SQLCompiler, **kw: Any) -> str:
    padded, glob, _regex = element.clauses
    return f"({compiler.process(padded, **kw)} GLOB {compiler.process(glob, **kw)})"


@compiles(_WordIn, "postgresql")
def _word_in_regex(element: _WordIn, compiler: SQLCompiler, **kw: Any) -> str:
    padded, _glob, regex = element.clauses
    return f"({compiler.process(padded, **kw)} ~ {compiler.process(regex, **kw)})"


# The separators as a GLOB set (']' first and '-' last are literal) and as a regex bracket
# expression (in Postgres's AREs a backslash escapes punctuation even inside brackets).
_GLOB_SET = "[]" + "".join(c for c in _TEXT_SEPARATORS if c not in "]-") + "-]"
_REGEX_SET = "[" + "".join("\\" + c if c in string.punctuation else c
                           for c in _TEXT_SEPARATORS) + "]"


def _text_match(col: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
    words = _words(value)
    if not words:
        return sa.false()  # a value of only separators has no word to find
    space = _bind(" ")
    padded = space.concat(sa.func.lower(col)).concat(space)
    # Words hold no separator, so none of GLOB's or the regex's special characters.
    return sa.and_(*(
        _WordIn(padded, _bind(f"*{_GLOB_SET}{w}{_GLOB_SET}*"), _bind(f"{_REGEX_SET}{w}{_REGEX_SET}"))
        for w in words
    ))


def _describe(raw: str | int | float | bool) -> str:
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, str):
        return f"string {raw!r}"
    return f"number {raw}"

