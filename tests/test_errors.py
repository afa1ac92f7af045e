"""Bad input gets a clear error, and leaves nothing behind.

URL problems need no database; the rest run on SQLite and Postgres through ``database``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.service import RPCError

from dbosify import workflow
from dbosify._exceptions import ConfigurationError, DatabaseError
from dbosify._runtime._process import close_current
from dbosify._store import _tables
from dbosify._store._database import resolve_database_url
from dbosify.client import Client, WorkflowExecutionStatus
from dbosify.worker import Worker

Q = "errors-q"


@workflow.defn
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


def _engine(database: str) -> sa.Engine:
    db = resolve_database_url(database)
    options = {"schema_translate_map": {None: "dbosify"}} if db.dialect == "postgresql" else {}
    return sa.create_engine(db.sqlalchemy_url, execution_options=options)


# Database URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql//user@host/db", "malformed database URL"),
    ("mysql://user@host/db", "unsupported database URL scheme 'mysql'"),
    ("postgresql://user@localhost:5432", "names no database"),
    ("postgresql://user@localhost:notaport/db", "malformed database URL"),
])
async def test_malformed_url(url: str, expected: str) -> None:
    with pytest.raises(DatabaseError, match=expected) as info:
        await Client.connect(url)
    assert "postgresql://" in str(info.value) or "sqlite:///" in str(info.value)


async def test_malformed_url_hides_the_password() -> None:
    with pytest.raises(DatabaseError) as info:
        await Client.connect("postgresql://user:secret@localhost:notaport/db")
    assert "secret" not in str(info.value)


async def test_unreachable_database_names_url_without_password() -> None:
    url = "postgresql://user:secret@127.0.0.1:1/x"
    with pytest.raises(DatabaseError) as info:
        await Client.connect(url)
    message = str(info.value)
    assert "cannot reach the database" in message
    assert "127.0.0.1:1/x" in message and "user" in message
    assert "secret" not in message
    assert "secret" not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://", "sqlite:///file:x?mode=memory"])
async def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(DatabaseError, match="in-memory SQLite"):
        await Client.connect(url)


# The database itself ----------------------------------------------------------------------------


async def test_newer_schema_is_refused(database: str) -> None:
    await Client.connect(database)  # Creates the tables.
    close_current()
    engine = _engine(database)
    meta = _tables.meta
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(meta).where(meta.c.key == "schema_version")
                         .values(value=str(_tables.SCHEMA_VERSION + 1)))
        with pytest.raises(DatabaseError) as info:
            await Client.connect(database)
        message = str(info.value)
        assert "newer dbosify" in message
        assert f"schema version {_tables.SCHEMA_VERSION + 1}" in message
        assert "upgrade dbosify" in message
    finally:
        # The Postgres test database outlives this test: put the version back.
        with engine.begin() as conn:
            conn.execute(sa.update(meta).where(meta.c.key == "schema_version")
                         .values(value=str(_tables.SCHEMA_VERSION)))
        engine.dispose()


async def test_older_schema_is_upgraded_keeping_its_runs(database: str) -> None:
    client = await Client.connect(database)
    # No worker serves the queue: the run stays RUNNING, stored only in dbosify's tables.
    handle = await client.start_workflow(Echo.run, "kept", id="old-schema", task_queue=Q)
    close_current()
    engine = _engine(database)
    postgres = database.startswith("postgresql")
    prefix = "dbosify." if postgres else ""
    meta = _tables.meta
    try:
        # A database as version 1 left it: without the columns version 2 added.
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {prefix}dbosify_runs DROP COLUMN close_records")
            conn.exec_driver_sql(
                f"ALTER TABLE {prefix}dbosify_activity_tasks DROP COLUMN cancel_reason")
            for column in ("root_workflow_id", "root_run_id"):  # Added by version 4.
                conn.exec_driver_sql(f"ALTER TABLE {prefix}dbosify_runs DROP COLUMN {column}")
            conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="1"))
        client = await Client.connect(database)
        with engine.connect() as conn:
            version = conn.execute(sa.select(meta.c.value)
                                   .where(meta.c.key == "schema_version")).scalar()
            inspector = sa.inspect(conn)
            schema = "dbosify" if postgres else None
            runs = {c["name"] for c in inspector.get_columns("dbosify_runs", schema=schema)}
            tasks = {c["name"] for c in inspector.get_columns("dbosify_activity_tasks",
                                                              schema=schema)}
        assert version == str(_tables.SCHEMA_VERSION)
        assert {"close_records", "root_workflow_id", "root_run_id"} <= runs
        assert "cancel_reason" in tasks
        upgraded = client.get_workflow_handle(handle.id)
        assert (await upgraded.describe()).status == WorkflowExecutionStatus.RUNNING
        # And the upgraded database runs workflows to the end.
        async with Worker(client, task_queue=Q, workflows=[Echo]):
            assert await upgraded.result() == "kept"
    finally:
        engine.dispose()


async def test_second_database_while_workers_run(database: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    client = await Client.connect(database)
    async with Worker(client, task_queue=Q, workflows=[Echo]):
        with pytest.raises(ConfigurationError) as info:
            await Client.connect(other)
        message = str(info.value)
        assert resolve_database_url(database).redacted in message
        assert str(tmp_path / "other.sqlite") in message
        # The first database still works.
        assert await client.execute_workflow(Echo.run, "still", id="w", task_queue=Q) == "still"


async def test_switching_databases_without_workers(database: str, tmp_path: Path) -> None:
    first = await Client.connect(database)
    async with Worker(first, task_queue=Q, workflows=[Echo]):
        assert await first.execute_workflow(Echo.run, "one", id="a", task_queue=Q) == "one"
    second = await Client.connect(f"sqlite:///{tmp_path / 'second.sqlite'}")
    async with Worker(second, task_queue=Q, workflows=[Echo]):
        assert await second.execute_workflow(Echo.run, "two", id="b", task_queue=Q) == "two"
    assert [w.id async for w in second.list_workflows()] == ["b"]
    # The first client's database was closed by the switch: it says so.
    with pytest.raises(RPCError, match="closed"):
        await first.get_workflow_handle("a").describe()
    # Switching back finds the first database's run.
    again = await Client.connect(database)
    assert await again.get_workflow_handle("a").result() == "one"


# Bad arguments and unknown types ----------------------------------------------------------------


async def test_unserializable_argument_stores_nothing(client: Client) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        await client.start_workflow("Echo", object(), id="bad-arg", task_queue=Q)
    assert (await client.count_workflows()).count == 0
    with pytest.raises(RPCError, match="not found"):
        await client.get_workflow_handle("bad-arg").describe()


class _Waiter(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.loop.call_soon_threadsafe(self.seen.set)


async def test_unregistered_workflow_type_stays_running_and_says_why(
        client: Client, database: str) -> None:
    waiter = _Waiter("NoSuchWorkflow")
    logger = logging.getLogger("dbosify")
    logger.addHandler(waiter)
    try:
        async with Worker(client, task_queue=Q, workflows=[Echo]):
            handle = await client.start_workflow("NoSuchWorkflow", "x", id="ghost", task_queue=Q)
            await asyncio.wait_for(waiter.seen.wait(), 10)
            desc = await handle.describe()
            assert desc.status == WorkflowExecutionStatus.RUNNING
            pending = desc.raw_description.pending_workflow_task
            assert pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
            # The worker's other types still run.
            assert await client.execute_workflow(Echo.run, "ok", id="fine", task_queue=Q) == "ok"
            failure = await _task_failure(database, handle.result_run_id or "")
    finally:
        logger.removeHandler(waiter)
    assert "not registered" in waiter.messages[0]
    assert "NoSuchWorkflow" in failure and "not registered" in failure and Q in failure
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


async def _task_failure(database: str, run_id: str) -> str:
    """The run's recorded task failure, once the engine has written it (it logs first)."""
    engine = _engine(database)
    runs = _tables.runs
    try:
        for _ in range(200):
            with engine.connect() as conn:
                value = conn.execute(sa.select(runs.c.task_failure)
                                     .where(runs.c.run_id == run_id)).scalar()
            if value:
                return str(value)
            await asyncio.sleep(0.025)
    finally:
        engine.dispose()
    raise AssertionError("task_failure was never written")
