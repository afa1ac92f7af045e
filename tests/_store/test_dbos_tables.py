"""dbosify._store._dbos_tables reads DBOS's tables directly (for ``dbosify show``, without
importing DBOS). It depends on DBOS internals, so these tests build the history of real runs both
ways, straight from the tables and through the service (DBOS's client), and fail when they part:
a DBOS upgrade that renames a table or column or changes how values are stored breaks them."""

from __future__ import annotations

import asyncio
import base64
import pickle
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from dbosify import activity, workflow
from dbosify._records import EVENT_STEP
from dbosify._runtime._process import current_process
from dbosify._store import _tables as t
from dbosify._store._database import create_engine, resolve_database_url
from dbosify._store._dbos_tables import DbosTablesError, _decode, read_dbos_run
from dbosify.cli._read import history as cli_history
from dbosify.client import Client
from dbosify.history import HISTORY_COLUMNS, history_rows
from dbosify.history._run import run_records
from dbosify.worker import Worker

Q = "dbos-tables"
_SHORT = timedelta(seconds=10)
attempts: dict[str, int] = {}


@activity.defn
async def shout(word: str) -> str:
    key = activity.info().workflow_id or ""
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] == 1:
        raise RuntimeError("flaky once")  # A failed attempt, retried: its own record.
    return word.upper()


@activity.defn
async def echo(word: str) -> str:
    return word


@workflow.defn
class Trip:
    """Activities (one retried), a timer and a signal."""

    def __init__(self) -> None:
        self.words: list[str] = []

    @workflow.run
    async def run(self, word: str) -> list[str]:
        first = await workflow.execute_activity(
            shout, word, start_to_close_timeout=_SHORT,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=20)))
        await asyncio.sleep(0.05)
        await workflow.wait_condition(lambda: bool(self.words))
        second = await workflow.execute_activity(echo, self.words[0],
                                                 start_to_close_timeout=_SHORT)
        return [first, second]

    @workflow.signal
    def add(self, word: str) -> None:
        self.words.append(word)


@workflow.defn
class Broken:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(echo, "before", start_to_close_timeout=_SHORT)
        raise ApplicationError("broken on purpose", non_retryable=True)


@workflow.defn
class Countdown:
    @workflow.run
    async def run(self, n: int) -> int:
        if n > 0:
            await workflow.execute_activity(echo, str(n), start_to_close_timeout=_SHORT)
            workflow.continue_as_new(n - 1)
        return n


@pytest.fixture
def engine(database: str) -> Iterator[sa.Engine]:
    engine = create_engine(resolve_database_url(database))
    yield engine
    engine.dispose()


async def _direct(engine: sa.Engine, run_id: str) -> list[HistoryEvent]:
    def read() -> list[HistoryEvent]:
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).one()
            dbos = read_dbos_run(conn, run_id)
        records = run_records(row, dbos.step_outputs, dbos.workflow_output,
                              dbos.first_completion)
        process = current_process()
        assert process is not None
        return records.history(process.identity)

    return await asyncio.to_thread(read)


async def _same_history(engine: sa.Engine, database: str, client: Client,
                        handle: WorkflowHandle[Any, Any], run_id: str) -> list[HistoryEvent]:
    """The run's history read directly equals the service's, event for event, and so do the
    rows ``dbosify show`` prints; returns it."""
    served = (await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()).events
    direct = await _direct(engine, run_id)
    assert [e.event_type for e in direct] == [e.event_type for e in served]
    assert direct == served
    shown = await asyncio.to_thread(cli_history, database, handle.id, run_id)
    expected = await history_rows(served)
    columns = [c for c in HISTORY_COLUMNS if c != "identity"]
    assert [[_comparable(r[c]) for c in columns] for r in shown] == \
        [[_comparable(r[c]) for c in columns] for r in expected]
    return list(served)


def _comparable(value: Any) -> Any:
    # A decoded failure is a fresh exception object each time: compare what it says.
    return (type(value), str(value)) if isinstance(value, BaseException) else value


async def _parked(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until ``Trip`` waits for its signal: its timer fired and its last task completed."""
    for _ in range(1000):
        kinds = [EventType.Name(e.event_type) for e in (await handle.fetch_history()).events]
        if "EVENT_TYPE_TIMER_FIRED" in kinds and kinds[-1] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{handle.id} never parked on its signal")


async def _dbos_done(engine: sa.Engine, run_id: str) -> None:
    """Wait until the run's DBOS workflow has ended (it writes its output after the close)."""
    for _ in range(500):
        with engine.connect() as conn:
            if not read_dbos_run(conn, run_id).pending:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the DBOS workflow of {run_id} never ended")


async def test_histories_read_directly_equal_the_services(client: Client, database: str,
                                                          engine: sa.Engine) -> None:
    attempts.clear()
    wid = f"trip-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=Q, workflows=[Trip, Broken, Countdown],
                      activities=[shout, echo]):
        trip = await client.start_workflow(Trip.run, "hi", id=wid, task_queue=Q)
        # In flight, parked on the signal: the DBOS workflow is pending.
        await _parked(trip)
        await _same_history(engine, database, client, trip, trip.result_run_id or "")
        await trip.signal(Trip.add, "there")
        assert await trip.result() == ["HI", "there"]
        events = await _same_history(engine, database, client, trip, trip.result_run_id or "")
        kinds = {EventType.Name(e.event_type) for e in events}
        assert {"EVENT_TYPE_TIMER_FIRED", "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
                "EVENT_TYPE_ACTIVITY_TASK_COMPLETED"} <= kinds
        assert any(e.activity_task_started_event_attributes.attempt == 2 for e in events)

        broken = await client.start_workflow(Broken.run, id=f"broken-{wid}", task_queue=Q)
        with pytest.raises(WorkflowFailureError) as failed:
            await broken.result()
        assert str(failed.value.cause) == "broken on purpose"
        await _same_history(engine, database, client, broken, broken.result_run_id or "")

        countdown = await client.start_workflow(Countdown.run, 2, id=f"count-{wid}",
                                                task_queue=Q)
        assert await countdown.result() == 0
        async for execution in client.list_workflows(f"WorkflowId = 'count-{wid}'"):
            await _same_history(engine, database, client, countdown, execution.run_id)

        # Terminated while waiting: no close records, the last completion is DBOS's output.
        waiting = await client.start_workflow(Trip.run, "x", id=f"term-{wid}", task_queue=Q)
        await _parked(waiting)
        await waiting.terminate("enough")
        await _dbos_done(engine, waiting.result_run_id or "")
        await _same_history(engine, database, client, waiting, waiting.result_run_id or "")

    # A run no worker has taken has no DBOS workflow yet: only its start.
    idle = await client.start_workflow("Trip", "y", id=f"idle-{wid}", task_queue="nobody")
    await _same_history(engine, database, client, idle, idle.result_run_id or "")


async def test_event_steps_are_what_the_engine_records(client: Client, engine: sa.Engine
                                                       ) -> None:
    """The step name and the value layout the reader expects are the engine's."""
    attempts.clear()
    async with Worker(client, task_queue=Q, workflows=[Trip], activities=[shout, echo]):
        handle = await client.start_workflow(Trip.run, "a", id=f"t-{uuid.uuid4().hex[:8]}",
                                             task_queue=Q)
        await _parked(handle)
        await handle.signal(Trip.add, "b")
        await handle.result()
        await _dbos_done(engine, handle.result_run_id or "")
        run_id = handle.result_run_id or ""
        dbos = current_process().dbos_client()  # type: ignore[union-attr]
        steps = await asyncio.to_thread(dbos.list_workflow_steps, run_id)
        status = await asyncio.to_thread(lambda: dbos.retrieve_workflow(run_id).get_status())
    with engine.connect() as conn:
        direct = read_dbos_run(conn, run_id)
    assert direct.step_outputs == [s["output"] for s in steps
                                   if s["function_name"] == EVENT_STEP and s["output"]]
    assert direct.step_outputs and all("records" in o for o in direct.step_outputs)
    assert direct.workflow_output == status.output
    assert direct.first_completion == status.input["args"][1]  # type: ignore[index]
    assert direct.pending is (status.status == "PENDING")


def test_a_value_stored_another_way_fails_loudly() -> None:
    plain = {"records": [{"kind": "task", "v": 2}], "n": (1, 2.5, None, True)}
    assert _decode(base64.b64encode(pickle.dumps(plain)).decode(), None) == plain
    assert _decode(base64.b64encode(pickle.dumps(plain)).decode(), "py_pickle") == plain
    assert _decode('{"positionalArgs": ["r", "c"]}', "portable_json") == \
        {"args": ("r", "c"), "kwargs": {}}
    with pytest.raises(DbosTablesError, match="serialization 'msgpack'"):
        _decode("x", "msgpack")
    # Only plain data is unpickled: a stored object naming a class is refused, never loaded.
    with pytest.raises(DbosTablesError, match=r"names datetime\.timedelta"):
        _decode(base64.b64encode(pickle.dumps(timedelta(1))).decode(), None)


def test_a_database_without_dbos_tables_has_no_records(tmp_path: Path) -> None:
    engine = create_engine(resolve_database_url(f"sqlite:///{tmp_path / 'bare.sqlite'}"))
    try:
        with engine.connect() as conn:
            found = read_dbos_run(conn, "no-such-run")
    finally:
        engine.dispose()
    assert found.step_outputs == [] and found.workflow_output is None
    assert found.first_completion is None and not found.pending


@pytest.mark.parametrize("stored", ["golden.sqlite", "inflight-v1.sqlite"])
async def test_runs_recorded_by_older_dbosify_read_the_same(stored: str, tmp_path: Path) -> None:
    """Checked-in databases written by earlier versions (record format 1, in flight too)."""
    copy = tmp_path / stored
    shutil.copyfile(Path(__file__).parents[1] / "golden" / stored, copy)
    url = f"sqlite:///{copy}"
    client = await Client.connect(url)
    engine = create_engine(resolve_database_url(url))
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.select(t.runs.c.workflow_id, t.runs.c.run_id)).all()
        assert runs
        for workflow_id, run_id in runs:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            await _same_history(engine, url, client, handle, run_id)
    finally:
        engine.dispose()
        await client.close()
