"""Temporal visibility queries: the parser, the compiler's errors, and results on SQLite and Postgres."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify._store._visibility import (
    EXECUTION_STATUS_NAMES,
    CompiledFilter,
    VisibilityQueryError,
    compile_filter,
    execution_status_name,
    referenced_attributes,
)
from dbosify._store._visibility_parse import (
    And,
    Between,
    Comparison,
    Field,
    InList,
    IsNull,
    Not,
    Or,
    OrderTerm,
    Query,
    StartsWith,
    Value,
    parse_query,
)

PG_ADMIN_URL = os.environ.get("DBOSIFY_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# One per test process: parallel sessions (pytest-xdist workers) must not share or drop it.
PG_SCRATCH_DB = f"dbosify_visibility_test_{os.getpid()}"


# ------------------------------------------------------------------------------------ parser


def f(name: str, pos: int) -> Field:
    return Field(name, pos)


def v(value: str | int | float | bool, pos: int) -> Value:
    return Value(value, pos)


def where(query: str) -> object:
    return parse_query(query).where


def test_and_binds_tighter_than_or() -> None:
    assert where("a = 1 OR b = 2 AND c = 3") == Or((
        Comparison(f("a", 0), "=", v(1, 4)),
        And((Comparison(f("b", 9), "=", v(2, 13)), Comparison(f("c", 19), "=", v(3, 23)))),
    ))


def test_parentheses_override_precedence() -> None:
    assert where("(a = 1 OR b = 2) AND c = 3") == And((
        Or((Comparison(f("a", 1), "=", v(1, 5)), Comparison(f("b", 10), "=", v(2, 14)))),
        Comparison(f("c", 21), "=", v(3, 25)),
    ))


def test_chains_are_flat_and_not_binds_tighter_than_and() -> None:
    assert where("NOT a = 1 AND b = 2 AND c = 3") == And((
        Not(Comparison(f("a", 4), "=", v(1, 8))),
        Comparison(f("b", 14), "=", v(2, 18)),
        Comparison(f("c", 24), "=", v(3, 28)),
    ))
    assert where("NOT (a = 1 OR b = 2)") == Not(Or((
        Comparison(f("a", 5), "=", v(1, 9)), Comparison(f("b", 14), "=", v(2, 18)))))
    assert where("NOT NOT a = 1") == Not(Not(Comparison(f("a", 8), "=", v(1, 12))))


@pytest.mark.parametrize(("query", "expected"), [
    ("a = 'x'", Comparison(f("a", 0), "=", v("x", 4))),
    ("a != 'x'", Comparison(f("a", 0), "!=", v("x", 5))),
    ("a <> 'x'", Comparison(f("a", 0), "!=", v("x", 5))),
    ("a < 1", Comparison(f("a", 0), "<", v(1, 4))),
    ("a <= 1", Comparison(f("a", 0), "<=", v(1, 5))),
    ("a > 1", Comparison(f("a", 0), ">", v(1, 4))),
    ("a >= 1", Comparison(f("a", 0), ">=", v(1, 5))),
    ("a>=1", Comparison(f("a", 0), ">=", v(1, 3))),
    ("a IN ('x', 'y')", InList(f("a", 0), (v("x", 6), v("y", 11)), negated=False)),
    ("a NOT IN (1)", InList(f("a", 0), (v(1, 10),), negated=True)),
    ("a BETWEEN 1 AND 2", Between(f("a", 0), v(1, 10), v(2, 16), negated=False)),
    ("a NOT BETWEEN 1 AND 2", Between(f("a", 0), v(1, 14), v(2, 20), negated=True)),
    ("a STARTS_WITH 'p'", StartsWith(f("a", 0), v("p", 14), negated=False)),
    ("a NOT STARTS_WITH 'p'", StartsWith(f("a", 0), v("p", 18), negated=True)),
    ("a IS NULL", IsNull(f("a", 0), negated=False)),
    ("a IS NOT NULL", IsNull(f("a", 0), negated=True)),
    ("a = true", Comparison(f("a", 0), "=", v(True, 4))),
    ("a = FALSE", Comparison(f("a", 0), "=", v(False, 4))),
])
def test_every_operator(query: str, expected: object) -> None:
    assert where(query) == expected


def test_keywords_are_case_insensitive() -> None:
    parsed = parse_query("a In (1) anD b not Between 1 aNd 2 oR c iS nOt NuLl order BY x DeSc, y asc")
    assert parsed == Query(
        where=Or((
            And((InList(f("a", 0), (v(1, 6),), False), Between(f("b", 13), v(1, 27), v(2, 33), True))),
            IsNull(f("c", 38), True),
        )),
        order_by=(OrderTerm(f("x", 61), True), OrderTerm(f("y", 69), False)),
        group_by=(),
    )


@pytest.mark.parametrize(("literal", "value"), [
    ("'it''s'", "it's"),
    ('"say ""hi"""', 'say "hi"'),
    (r"'it\'s'", "it's"),
    (r'"say \"hi\""', 'say "hi"'),
    (r"'back\\slash'", "back\\slash"),
    (r"'a\nb\tc\rd\0e\bf\Zg'", "a\nb\tc\rd\0e\bf\x1ag"),
    (r"'\%\_\q'", "%_q"),  # an unknown escape stands for the character itself
    ("'double \" inside single'", 'double " inside single'),
    ("\"single ' inside double\"", "single ' inside double"),
    ("''", ""),
    ("'; DROP TABLE x; --'", "; DROP TABLE x; --"),
    ("'/* not a comment */'", "/* not a comment */"),
    ("'ünïcödé'", "ünïcödé"),
    ("42", 42),
    ("-7", -7),
    ("2.5", 2.5),
    ("-0.25", -0.25),
    (".5", 0.5),
    ("1e3", 1000.0),
    ("1.5E-2", 0.015),
])
def test_literals(literal: str, value: object) -> None:
    node = where(f"a = {literal}")
    assert isinstance(node, Comparison)
    assert node.value.value == value
    assert type(node.value.value) is type(value)


def test_names() -> None:
    assert where("`Custom Field` = 1") == Comparison(f("Custom Field", 0), "=", v(1, 17))
    assert where("`a``b` = 1") == Comparison(f("a`b", 0), "=", v(1, 9))
    assert where("`order` IS NULL") == IsNull(f("order", 0), False)
    assert where("Snake_Case_2 = 1") == Comparison(f("Snake_Case_2", 0), "=", v(1, 15))


def test_order_and_group_by() -> None:
    assert parse_query("ORDER BY StartTime") == Query(None, (OrderTerm(f("StartTime", 9), False),), ())
    assert parse_query("  group by ExecutionStatus ") == Query(None, (), (f("ExecutionStatus", 11),))
    assert parse_query("") == Query(None, (), ())
    assert parse_query("   ") == Query(None, (), ())


@pytest.mark.parametrize(("query", "position", "problem"), [
    ("WorkflowType = ", 15, "expected a value after '=', found end of query"),
    ("WorkflowType", 12, "expected an operator after WorkflowType"),
    ("a = 'x'; DROP TABLE dbosify_runs", 7, "unexpected character ';'"),
    ("a = 1 -- comment", 6, "comments are not allowed (found '--')"),
    ("a = 1 /* c */", 6, "comments are not allowed (found '/*')"),
    ("a = 1 # c", 6, "comments are not allowed"),
    ("a = 'open", 4, "unterminated string"),
    ('a = "open\\"', 4, "unterminated string"),
    ("`open = 1", 0, "unterminated `backquoted` name"),
    ("`` = 1", 0, "empty `backquoted` name"),
    ("(a = 1", 6, "expected ')' (or AND, OR) to close the '(' at position 0, found end of query"),
    ("a = 1)", 5, "expected AND, OR, ORDER BY, GROUP BY or end of query, found ')'"),
    ("a = 1 b = 2", 6, "found name b"),
    ("a = 1 AND", 9, "expected a search attribute name at the start of a condition, found end"),
    ("a = 1 OR OR b = 1", 9, "found 'OR' (write `OR` in backquotes"),
    ("'x' = a", 0, "the name goes on the left of the operator"),
    ("1 = 1", 0, "found number 1"),
    ("a = Running", 4, "did you forget to quote 'Running'?"),
    ("a = NULL", 4, "use IS NULL or IS NOT NULL"),
    ("a IS 1", 5, "expected NULL after IS, found number 1"),
    ("a IS NOT 'x'", 9, "expected NULL after IS NOT"),
    ("a NOT = 1", 6, "expected IN, BETWEEN or STARTS_WITH after NOT, found '='"),
    ("a IN 1", 5, "expected '(' after IN, found number 1"),
    ("a IN ()", 6, "expected a value after IN (, found ')'"),
    ("a IN (1, 2", 10, "expected ')' or ',' in the IN list, found end of query"),
    ("a BETWEEN 1 OR 2", 12, "expected AND after BETWEEN's first value, found 'OR'"),
    ("a BETWEEN 1 AND", 15, "expected a value after BETWEEN ... AND, found end of query"),
    ("a LIKE 'x%'", 2, "LIKE is not supported: use STARTS_WITH"),
    ("a == 1", 3, "expected a value after '=', found '='"),
    ("a = 1 LIMIT 10", 6, "LIMIT is not supported"),
    ("a = 12abc", 4, "invalid number '12a'"),
    ("a = 1.2.3", 4, "invalid number"),
    ("a = $1", 4, "unexpected character '$'"),
    ("a = ?", 4, "unexpected character '?'"),
    ("a = 1 ORDER x", 12, "expected BY after ORDER, found name x"),
    ("ORDER BY", 8, "expected a search attribute name after ORDER BY, found end of query"),
    ("ORDER BY a ASC DESC", 15, "expected ',', ASC, DESC or end of query, found 'DESC'"),
    ("a = 1 ORDER BY x GROUP BY ExecutionStatus", 17, "can't have both ORDER BY and GROUP BY"),
    ("GROUP BY ExecutionStatus ORDER BY x", 25, "can't have both ORDER BY and GROUP BY"),
    ("GROUP BY", 8, "expected a search attribute name after GROUP BY"),
    ("(" * 150 + "a = 1" + ")" * 150, 100, "nests NOT or parentheses more than 100 deep"),
    ("NOT " * 150 + "a = 1", 400, "nests NOT or parentheses more than 100 deep"),
])
def test_syntax_errors_name_problem_and_position(query: str, position: int, problem: str) -> None:
    with pytest.raises(VisibilityQueryError) as info:
        parse_query(query)
    assert info.value.position == position
    assert problem in info.value.problem
    assert str(info.value).startswith(f"invalid visibility query at position {position}: ")
    assert isinstance(info.value, ValueError)


def test_error_message_format() -> None:
    with pytest.raises(VisibilityQueryError) as info:
        compile_filter("WorkflowType = ", {})
    assert str(info.value) == ("invalid visibility query at position 15: expected a value after "
                               "'=', found end of query")


# ---------------------------------------------------------------------------------- compiler

TYPES: Mapping[str, str] = {
    "CustomerId": "Keyword",
    "Priority": "Int",
    "Score": "Double",
    "Urgent": "Bool",
    "Due": "Datetime",
    "Tags": "KeywordList",
    "Notes": "Text",
    "Custom Field": "Keyword",
}


@pytest.mark.parametrize(("query", "position", "problem"), [
    ("ExecutionStatus = 'Runing'", 18, "invalid ExecutionStatus 'Runing': expected one of "
     "'Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'ContinuedAsNew', 'TimedOut'"),
    ("ExecutionStatus = 'running'", 18, "invalid ExecutionStatus"),
    ("ExecutionStatus IN ('Running', 99)", 31, "invalid ExecutionStatus 99"),
    ("ExecutionStatus > 'Running'", 0, "> is not supported on ExecutionStatus"),
    ("WorkflowId = 1", 13, "WorkflowId is a Keyword field: expected a string, found number 1"),
    ("StartTime > 'yesterday'", 12, "invalid time 'yesterday': expected RFC 3339"),
    ("StartTime > '2024-13-01T00:00:00Z'", 12, "invalid time"),
    ("StartTime > 1.5", 12, "expected an RFC 3339 time string or Unix nanoseconds, found number 1.5"),
    ("StartTime STARTS_WITH '2024'", 0, "STARTS_WITH is not supported on StartTime"),
    ("HistoryLength = 'ten'", 16, "HistoryLength is a Int field: expected a number, found string"),
    ("Priority = true", 11, "expected a number, found TRUE"),
    ("Score BETWEEN 1 AND 'x'", 20, "Score is a Double field: expected a number"),
    ("Urgent = 1", 9, "Urgent is a Bool field: expected TRUE or FALSE, found number 1"),
    ("Urgent < true", 0, "< is not supported on Urgent, a Bool field"),
    ("Due = 'soon'", 6, "invalid time 'soon'"),
    ("Tags STARTS_WITH 'r'", 0, "STARTS_WITH is not supported on Tags, a KeywordList field"),
    ("Tags NOT BETWEEN 'a' AND 'b'", 0, "NOT BETWEEN is not supported on Tags"),
    ("Notes > 'a'", 0, "> is not supported on Notes, a Text field (supported: !=, =)"),
    ("Notes IN ('a')", 0, "IN is not supported on Notes"),
    ("CustomerId = 5", 13, "CustomerId is a Keyword field: expected a string"),
    ("workflowId = 'x'", 0, "names are case-sensitive: did you mean WorkflowId?"),
    ("ExecutionDuration > 5", 0, "ExecutionDuration is a Temporal system search attribute"),
    ("ORDER BY Notes", 9, "can't ORDER BY Notes: a Text search attribute"),
    ("ORDER BY Tags DESC", 9, "can't ORDER BY Tags"),
    ("GROUP BY WorkflowType", 9, "GROUP BY supports only ExecutionStatus, found WorkflowType"),
    ("GROUP BY ExecutionStatus, ExecutionStatus", 26, "GROUP BY takes a single field"),
    ("Weird = 'x'", 0, "search attribute Weird has type 'Strange', expected one of"),
])
def test_compile_errors(query: str, position: int, problem: str) -> None:
    with pytest.raises(VisibilityQueryError) as info:
        compile_filter(query, {**TYPES, "Weird": "Strange"})
    assert info.value.position == position
    assert problem in info.value.problem


def test_system_attribute_stored_as_custom_is_allowed() -> None:
    compile_filter("TemporalChangeVersion = 'p-1'", {"TemporalChangeVersion": "KeywordList"})


def test_referenced_attributes() -> None:
    assert referenced_attributes(
        "WorkflowId = 'a' AND (Priority > 1 OR NOT `Custom Field` IS NULL) "
        "AND Tags IN ('x') ORDER BY Due, StartTime") == {"Priority", "Custom Field", "Tags", "Due"}
    assert referenced_attributes("GROUP BY ExecutionStatus") == set()
    assert referenced_attributes("") == set()
    with pytest.raises(VisibilityQueryError):
        referenced_attributes("a = ")


def test_compiled_shape() -> None:
    empty = compile_filter("", {})
    assert str(empty.where.compile()) == "true"
    assert [str(c) for c in empty.order_by] == ["dbosify_runs.start_time_ms DESC",
                                                "dbosify_runs.run_id ASC"]
    assert empty.group_by == ()
    grouped = compile_filter("GROUP BY ExecutionStatus", {})
    assert grouped.group_by_fields == ("ExecutionStatus",)
    assert [str(c) for c in grouped.group_by] == ["dbosify_runs.status"]


def test_values_are_bound_parameters_never_sql_text() -> None:
    hostile = "x'); DROP TABLE dbosify_runs; --"
    compiled = compile_filter(f"WorkflowId = '{hostile.replace(chr(39), chr(39) * 2)}' "
                              f"AND `{hostile}` = 'y'", {hostile: "Keyword"})
    stmt = sa.select(t.runs.c.run_id).where(compiled.where).compile()
    assert "DROP" not in str(stmt)
    assert hostile in stmt.params.values()


def test_execution_status_names() -> None:
    assert EXECUTION_STATUS_NAMES["Running"] == 1
    assert EXECUTION_STATUS_NAMES["TimedOut"] == 7
    assert execution_status_name(6) == "ContinuedAsNew"


# --------------------------------------------------------------------------------- execution


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


# run id: (workflow id, type, task queue, status, start, execution time, close, history, parent)
RUNS: dict[str, tuple[str, str, str, int, str, str, str | None, int, str | None]] = {
    "r1": ("order-1", "Order", "q1", 1, "2024-01-01", "2024-01-01", None, 5, None),
    "r2": ("order-2", "Order", "q1", 2, "2024-01-02", "2024-01-10", "2024-01-03", 10, None),
    "r3": ("ship-1", "Shipment", "q2", 3, "2024-01-03", "2024-01-03", "2024-01-04", 2, "order-1"),
    "r4": ("Order-3", "Order", "q2", 4, "2024-01-04", "2024-01-04", "2024-01-05", 0, None),
    "r5": ("x'; DROP TABLE dbosify_runs; --", "Evil", "q1", 5, "2024-01-05", "2024-01-05",
           "2024-01-06", 0, None),
    "r6": ("order_100%", "Order", "q3", 6, "2024-01-06", "2024-01-06", "2024-01-07", 0, None),
    "r7": ("order-7", "Order", "q3", 7, "2024-01-07", "2024-01-07", "2024-01-08", 0, None),
    "r8": ("order-8", "Order", "q3", 2, "2024-01-08", "2024-01-08", "2024-01-09", 0, None),
}
# (run id, name, type, value): KeywordList values are one row per element.
ATTRIBUTES: list[tuple[str, str, str, Any]] = [
    ("r1", "CustomerId", "Keyword", "alice"),
    ("r1", "Priority", "Int", 3),
    ("r1", "Score", "Double", 1.5),
    ("r1", "Urgent", "Bool", True),
    ("r1", "Due", "Datetime", ms("2024-02-01")),
    ("r1", "Tags", "KeywordList", "red"),
    ("r1", "Tags", "KeywordList", "blue"),
    ("r1", "Notes", "Text", "my-business-id-foobar"),
    ("r2", "CustomerId", "Keyword", "bob"),
    ("r2", "Priority", "Int", 7),
    ("r2", "Score", "Double", 2.25),
    ("r2", "Urgent", "Bool", False),
    ("r2", "Due", "Datetime", ms("2024-03-01")),
    ("r2", "Tags", "KeywordList", "green"),
    ("r2", "Notes", "Text", "Hello World"),
    ("r3", "CustomerId", "Keyword", "alice"),
    ("r3", "Tags", "KeywordList", "red"),
    ("r3", "Notes", "Text", "Order_Item shipped"),
    ("r5", "CustomerId", "Keyword", 'a"b\\c'),
    ("r5", "Priority", "Int", -2),
    ("r6", "Priority", "Int", 100),
    ("r6", "Custom Field", "Keyword", "spaced"),
    # The same name under another type (nothing registers types): kept out of Int comparisons.
    ("r7", "Priority", "Keyword", "high"),
]
_COLUMN_FOR_TYPE = {"Keyword": "value_text", "KeywordList": "value_text", "Text": "value_text",
                    "Int": "value_int", "Double": "value_double", "Bool": "value_bool",
                    "Datetime": "value_time_ms"}
ALL = [f"r{i}" for i in range(1, 9)]


def _populate(engine: sa.Engine) -> None:
    t.metadata.drop_all(engine)
    t.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(t.runs), [
            {"run_id": run_id, "namespace": "default", "workflow_id": wf,
             "first_execution_run_id": run_id, "workflow_type": wf_type, "task_queue": queue,
             "status": status, "start_time_ms": ms(start), "execution_time_ms": ms(exec_time),
             "close_time_ms": ms(close) if close else None, "start_request": b"",
             "randomness_seed": 0, "history_length": history, "parent_workflow_id": parent}
            for run_id, (wf, wf_type, queue, status, start, exec_time, close, history, parent)
            in RUNS.items()
        ])
        conn.execute(sa.insert(t.search_attributes), [
            {"run_id": run_id, "name": name, "type": type_, "value_text": None, "value_int": None,
             "value_double": None, "value_bool": None, "value_time_ms": None,
             _COLUMN_FOR_TYPE[type_]: value}
            for run_id, name, type_, value in ATTRIBUTES
        ])


def _postgres_engine() -> sa.Engine | None:
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": PG_SCRATCH_DB}).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{PG_SCRATCH_DB}"'))
        admin.dispose()
    except sa.exc.OperationalError:
        return None
    return sa.create_engine(admin.url.set(database=PG_SCRATCH_DB))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("visibility") / "dbosify.sqlite"
        eng = sa.create_engine(f"sqlite:///{path}")
    else:
        pg = _postgres_engine()
        if pg is None:
            if os.environ.get("DBOSIFY_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"needs Postgres at {PG_ADMIN_URL} (DBOSIFY_REQUIRE_POSTGRES=1)")
            pytest.skip("needs Postgres")
        eng = pg
    _populate(eng)
    yield eng
    eng.dispose()
    if request.param == "postgres":
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_SCRATCH_DB}" WITH (FORCE)'))
        admin.dispose()


def run_ids(engine: sa.Engine, query: str, types: Mapping[str, str] = TYPES) -> list[str]:
    compiled = compile_filter(query, types)
    stmt = sa.select(t.runs.c.run_id).where(compiled.where).order_by(*compiled.order_by)
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


FILTERS: list[tuple[str, list[str]]] = [
    ("", ALL),
    ("WorkflowId = 'order-1'", ["r1"]),
    ("WorkflowId != 'order-1'", ["r2", "r3", "r4", "r5", "r6", "r7", "r8"]),
    ("WorkflowType = 'Order'", ["r1", "r2", "r4", "r6", "r7", "r8"]),
    ("WorkflowType = \"Order\" AND TaskQueue = 'q1'", ["r1", "r2"]),
    ("RunId = 'r3'", ["r3"]),
    ("RunId IN ('r3', 'r4', 'nope')", ["r3", "r4"]),
    ("TaskQueue NOT IN ('q1', 'q2')", ["r6", "r7", "r8"]),
    ("WorkflowType < 'Order'", ["r5"]),
    ("WorkflowType BETWEEN 'O' AND 'Z'", ["r1", "r2", "r3", "r4", "r6", "r7", "r8"]),
    # ExecutionStatus
    ("ExecutionStatus = 'Running'", ["r1"]),
    ("ExecutionStatus != 'Running'", ["r2", "r3", "r4", "r5", "r6", "r7", "r8"]),
    ("ExecutionStatus IN ('Completed', 'Failed')", ["r2", "r3", "r8"]),
    ("ExecutionStatus NOT IN ('Completed', 'Failed', 'Running')", ["r4", "r5", "r6", "r7"]),
    ("ExecutionStatus = 'WORKFLOW_EXECUTION_STATUS_TIMED_OUT'", ["r7"]),
    ("ExecutionStatus = 2", ["r2", "r8"]),
    ("ExecutionStatus = 'ContinuedAsNew' OR ExecutionStatus = 'Terminated'", ["r5", "r6"]),
    ("ExecutionStatus = 'Paused'", []),
    # times
    ("StartTime > '2024-01-05T00:00:00Z'", ["r6", "r7", "r8"]),
    ("StartTime >= '2024-01-05T00:00:00Z'", ["r5", "r6", "r7", "r8"]),
    ("StartTime = '2024-01-05T01:00:00+01:00'", ["r5"]),
    ("StartTime = '2024-01-04T19:00:00.000-05:00'", ["r5"]),
    ("StartTime = '2024-01-05 00:00:00'", ["r5"]),
    ("StartTime = 1704412800000000000", ["r5"]),
    ("StartTime < '2024-01-02'", ["r1"]),
    ("StartTime BETWEEN '2024-01-02T00:00:00Z' AND '2024-01-03T00:00:00Z'", ["r2", "r3"]),
    ("StartTime NOT BETWEEN '2024-01-02T00:00:00Z' AND '2024-01-03T00:00:00Z'",
     ["r1", "r4", "r5", "r6", "r7", "r8"]),
    ("StartTime <= '2024-01-01T00:00:00.000999999Z'", ["r1"]),
    ("ExecutionTime > '2024-01-09T00:00:00Z'", ["r2"]),
    ("CloseTime IS NULL", ["r1"]),
    ("CloseTime IS NOT NULL", ["r2", "r3", "r4", "r5", "r6", "r7", "r8"]),
    ("CloseTime < '2024-01-04T12:00:00Z'", ["r2", "r3"]),
    ("NOT CloseTime < '2024-01-04T12:00:00Z'", ["r1", "r4", "r5", "r6", "r7", "r8"]),
    ("CloseTime != '2024-01-03T00:00:00Z'", ["r3", "r4", "r5", "r6", "r7", "r8"]),
    ("HistoryLength >= 5", ["r1", "r2"]),
    ("HistoryLength = 2.0", ["r3"]),
    ("ParentWorkflowId = 'order-1'", ["r3"]),
    ("ParentWorkflowId != 'x'", ["r3"]),
    ("ParentWorkflowId IS NULL", ["r1", "r2", "r4", "r5", "r6", "r7", "r8"]),
    ("WorkflowId IS NULL", []),
    ("WorkflowId IS NOT NULL", ALL),
    # STARTS_WITH: case-sensitive, and % and _ are plain characters
    ("WorkflowId STARTS_WITH 'order-'", ["r1", "r2", "r7", "r8"]),
    ("WorkflowId STARTS_WITH 'Order'", ["r4"]),
    ("WorkflowId STARTS_WITH 'order_'", ["r6"]),
    ("WorkflowId STARTS_WITH 'order_100%'", ["r6"]),
    ("WorkflowId STARTS_WITH '%'", []),
    ("WorkflowId STARTS_WITH ''", ALL),
    ("WorkflowId NOT STARTS_WITH 'order'", ["r3", "r4", "r5"]),
    # Keyword custom attribute
    ("CustomerId = 'alice'", ["r1", "r3"]),
    ("CustomerId != 'alice'", ["r2", "r5"]),
    ("NOT CustomerId = 'alice'", ["r2", "r4", "r5", "r6", "r7", "r8"]),
    ("CustomerId IN ('bob', 'zed')", ["r2"]),
    ("CustomerId NOT IN ('alice')", ["r2", "r5"]),
    ("CustomerId IS NULL", ["r4", "r6", "r7", "r8"]),
    ("CustomerId IS NOT NULL", ["r1", "r2", "r3", "r5"]),
    ("CustomerId STARTS_WITH 'al'", ["r1", "r3"]),
    ("CustomerId > 'b'", ["r2"]),
    ("CustomerId BETWEEN 'a' AND 'az'", ["r1", "r3", "r5"]),
    (r"""CustomerId = 'a"b\\c'""", ["r5"]),
    (r'''CustomerId = "a\"b\\c"''', ["r5"]),
    ('''CustomerId = "a""b\\\\c"''', ["r5"]),
    ("`Custom Field` = 'spaced'", ["r6"]),
    # Int (a Keyword value under the same name, on r7, is never compared as a number)
    ("Priority > 2", ["r1", "r2", "r6"]),
    ("Priority > 2.5", ["r1", "r2", "r6"]),
    ("Priority < 3.5", ["r1", "r5"]),
    ("Priority = -2", ["r5"]),
    ("Priority = 1e2", ["r6"]),
    ("Priority IN (3, 7)", ["r1", "r2"]),
    ("Priority BETWEEN 3 AND 7", ["r1", "r2"]),
    ("Priority NOT BETWEEN 3 AND 7", ["r5", "r6"]),
    ("Priority IS NOT NULL", ["r1", "r2", "r5", "r6", "r7"]),
    # Double
    ("Score >= 2", ["r2"]),
    ("Score = 1.5", ["r1"]),
    ("Score < 2", ["r1"]),
    ("Score IN (2.25, 9)", ["r2"]),
    # Bool
    ("Urgent = true", ["r1"]),
    ("Urgent = FALSE", ["r2"]),
    ("Urgent != true", ["r2"]),
    ("Urgent IN (true, false)", ["r1", "r2"]),
    # Datetime custom attribute
    ("Due > '2024-02-15T00:00:00Z'", ["r2"]),
    ("Due BETWEEN '2024-01-01' AND '2024-02-01T00:00:00Z'", ["r1"]),
    ("Due IS NULL", ["r3", "r4", "r5", "r6", "r7", "r8"]),
    # KeywordList: = is "contains"
    ("Tags = 'red'", ["r1", "r3"]),
    ("Tags = 'blue'", ["r1"]),
    ("Tags = 'red' AND Tags = 'blue'", ["r1"]),
    ("Tags != 'red'", ["r2"]),
    ("Tags IN ('green', 'blue')", ["r1", "r2"]),
    ("Tags NOT IN ('red')", ["r2"]),
    ("Tags NOT IN ('red', 'green')", []),
    ("Tags IS NULL", ["r4", "r5", "r6", "r7", "r8"]),
    ("Tags IS NOT NULL", ["r1", "r2", "r3"]),
    # Text: word match
    ("Notes = 'foobar'", ["r1"]),
    ("Notes = 'foo'", []),
    ("Notes = 'business foobar'", ["r1"]),
    ("Notes = 'hello'", ["r2"]),
    ("Notes = 'WORLD hello'", ["r2"]),
    ("Notes = 'hello there'", []),
    ("Notes = 'order_item'", ["r3"]),
    ("Notes = 'order'", []),
    ("Notes = 'order_%'", []),
    ("Notes = '--'", []),
    ("Notes != 'foobar'", ["r2", "r3"]),
    # an attribute no run has set matches nothing, and is absent everywhere
    ("Nobody = 'x'", []),
    ("Nobody IS NULL", ALL),
    ("Nobody IS NOT NULL", []),
    ("NOT Nobody = 'x'", ALL),
    ("Nobody = 'x' OR WorkflowId = 'order-1'", ["r1"]),
    # precedence and negation
    ("WorkflowId = 'order-1' OR WorkflowId = 'order-2' AND ExecutionStatus = 'Failed'", ["r1"]),
    ("(WorkflowId = 'order-1' OR WorkflowId = 'order-2') AND ExecutionStatus = 'Failed'", []),
    ("NOT (WorkflowType = 'Order' OR TaskQueue = 'q1')", ["r3"]),
    ("NOT WorkflowType = 'Order' AND TaskQueue = 'q1'", ["r5"]),
    ("NOT NOT WorkflowId = 'order-1'", ["r1"]),
    ("WorkflowType = 'Order' and not (Priority > 5 or CustomerId = 'alice')", ["r4", "r7", "r8"]),
]


@pytest.mark.parametrize(("query", "expected"), FILTERS, ids=[q for q, _ in FILTERS])
def test_filter(engine: sa.Engine, query: str, expected: list[str]) -> None:
    assert sorted(run_ids(engine, query)) == expected


ORDERED: list[tuple[str, list[str]]] = [
    ("", ["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"]),
    ("ORDER BY StartTime", ALL),
    ("order by StartTime asc", ALL),
    ("ORDER BY CloseTime DESC", ["r1", "r8", "r7", "r6", "r5", "r4", "r3", "r2"]),
    ("ORDER BY CloseTime", ["r2", "r3", "r4", "r5", "r6", "r7", "r8", "r1"]),
    ("ORDER BY WorkflowType, StartTime DESC", ["r5", "r8", "r7", "r6", "r4", "r2", "r1", "r3"]),
    ("ORDER BY ExecutionStatus DESC, StartTime", ["r7", "r6", "r5", "r4", "r3", "r2", "r8", "r1"]),
    ("ORDER BY HistoryLength DESC", ["r2", "r1", "r3", "r4", "r5", "r6", "r7", "r8"]),
    ("ORDER BY Priority", ["r5", "r1", "r2", "r6", "r3", "r4", "r7", "r8"]),
    ("WorkflowType = 'Order' ORDER BY Priority DESC", ["r4", "r7", "r8", "r6", "r2", "r1"]),
    ("ORDER BY Urgent", ["r2", "r1", "r3", "r4", "r5", "r6", "r7", "r8"]),
    ("ORDER BY Due DESC", ["r3", "r4", "r5", "r6", "r7", "r8", "r2", "r1"]),
    ("ORDER BY Score DESC, StartTime DESC", ["r8", "r7", "r6", "r5", "r4", "r3", "r2", "r1"]),
    ("ORDER BY CustomerId, RunId DESC", ["r5", "r3", "r1", "r2", "r8", "r7", "r6", "r4"]),
    ("ORDER BY Nobody", ALL),
    ("ExecutionStatus != 'Running' ORDER BY `Custom Field` DESC, StartTime",
     ["r2", "r3", "r4", "r5", "r7", "r8", "r6"]),
]


@pytest.mark.parametrize(("query", "expected"), ORDERED, ids=[q for q, _ in ORDERED])
def test_order_by(engine: sa.Engine, query: str, expected: list[str]) -> None:
    assert run_ids(engine, query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("GROUP BY ExecutionStatus", {"Running": 1, "Completed": 2, "Failed": 1, "Canceled": 1,
                                  "Terminated": 1, "ContinuedAsNew": 1, "TimedOut": 1}),
    ("WorkflowType = 'Order' group by ExecutionStatus",
     {"Running": 1, "Completed": 2, "Canceled": 1, "ContinuedAsNew": 1, "TimedOut": 1}),
    ("TaskQueue = 'q3' AND NOT Priority = 100 GROUP BY ExecutionStatus",
     {"Completed": 1, "TimedOut": 1}),
    ("WorkflowId = 'nope' GROUP BY ExecutionStatus", {}),
])
def test_group_by_execution_status_counts(engine: sa.Engine, query: str,
                                          expected: dict[str, int]) -> None:
    compiled: CompiledFilter = compile_filter(query, TYPES)
    stmt = (sa.select(*compiled.group_by, sa.func.count()).select_from(t.runs)
            .where(compiled.where).group_by(*compiled.group_by).order_by(*compiled.order_by))
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert {execution_status_name(row[0]): row[1] for row in rows} == expected


def test_count_without_group_by(engine: sa.Engine) -> None:
    compiled = compile_filter("Tags = 'red'", TYPES)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(t.runs)
                             .where(compiled.where)).scalar_one()
    assert count == 2


HOSTILE_MATCHED: list[tuple[str, list[str]]] = [
    ("WorkflowId = 'x''; DROP TABLE dbosify_runs; --'", ["r5"]),
    ("WorkflowId = \"x'; DROP TABLE dbosify_runs; --\"", ["r5"]),
    (r"WorkflowId = 'x\'; DROP TABLE dbosify_runs; --'", ["r5"]),
    ("WorkflowId IN ('order-1', 'x''); DELETE FROM dbosify_runs; --')", ["r1"]),
    ("WorkflowId = 'order-1'' OR ''1''=''1'", []),
    ("WorkflowId = '/* */ OR 1=1'", []),
    ("`WorkflowId = 1; DROP TABLE dbosify_runs` = 'x'", []),
    ("`Robert'); DROP TABLE dbosify_search_attributes;--` IS NULL", ALL),
    ("CustomerId STARTS_WITH '_'", []),
    ("Notes = 'x'' OR 1=1 --'", []),
]
HOSTILE_REJECTED = [
    "WorkflowId = 'x'; DROP TABLE dbosify_runs; --'",
    "WorkflowId = 'x'; DROP TABLE dbosify_runs",
    "WorkflowId = 'a' OR 1=1",
    "WorkflowId = 'a' -- AND ExecutionStatus = 'Running'",
    "WorkflowId = 'a' /* comment */",
    "WorkflowId = 'a' UNION SELECT run_id FROM dbosify_runs",
    "WorkflowId = (SELECT run_id FROM dbosify_runs)",
    "WorkflowId = 'a' OR sleep(5)",
    "WorkflowId = 'a'\x00",
    "1; DELETE FROM dbosify_runs",
    "WorkflowId = 'a' ORDER BY (SELECT 1)",
    "ORDER BY StartTime; DROP TABLE dbosify_runs",
]


def _assert_tables_intact(engine: sa.Engine) -> None:
    names = set(sa.inspect(engine).get_table_names())
    assert {"dbosify_runs", "dbosify_search_attributes"} <= names
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.runs)).scalar_one() == 8
        assert (conn.execute(sa.select(sa.func.count()).select_from(t.search_attributes))
                .scalar_one() == len(ATTRIBUTES))


@pytest.mark.parametrize(("query", "expected"), HOSTILE_MATCHED,
                         ids=[q for q, _ in HOSTILE_MATCHED])
def test_hostile_input_is_matched_literally(engine: sa.Engine, query: str,
                                            expected: list[str]) -> None:
    assert sorted(run_ids(engine, query)) == expected
    _assert_tables_intact(engine)


@pytest.mark.parametrize("query", HOSTILE_REJECTED)
def test_hostile_input_is_rejected(engine: sa.Engine, query: str) -> None:
    with pytest.raises(VisibilityQueryError):
        run_ids(engine, query)
    _assert_tables_intact(engine)
