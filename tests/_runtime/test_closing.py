"""A run's close records its last workflow task when no DBOS step did (``close_records``)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType

from dbosify import activity, workflow
from dbosify._store._database import resolve_database_url
from dbosify.client import Client
from dbosify.worker import Worker

Q = "closing-q"


@activity.defn
async def double(x: int) -> int:
    return 2 * x


@workflow.defn
class DoubleTwice:
    @workflow.run
    async def run(self, x: int) -> int:
        x = await workflow.execute_activity(double, x, start_to_close_timeout=timedelta(seconds=10))
        return await workflow.execute_activity(double, x,
                                               start_to_close_timeout=timedelta(seconds=10))


def _on_dbos_tables(database: str, sql: str, run_id: str | None) -> int:
    """Run ``sql`` on DBOS's tables (``{dbos}`` is their schema prefix, ``:r`` the run id):
    a query's number, or the rows a change touched."""
    db = resolve_database_url(database)
    engine = sa.create_engine(db.sqlalchemy_url)
    prefix = "dbos." if db.dialect == "postgresql" else ""
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql.format(dbos=prefix)), {"r": run_id})
            return int(result.scalar_one()) if result.returns_rows else result.rowcount
    finally:
        engine.dispose()


def _event_types(history: object) -> list[str]:
    return [EventType.Name(e.event_type) for e in history.events]  # type: ignore[attr-defined]


async def test_last_task_is_recorded_by_the_close_not_a_step(client: Client,
                                                              database: str) -> None:
    run_id = f"twice-{uuid.uuid4()}"
    async with Worker(client, task_queue=Q, workflows=[DoubleTwice], activities=[double]):
        handle = await client.start_workflow(DoubleTwice.run, 3, id=run_id, task_queue=Q)
        assert await handle.result() == 12
        history = await handle.fetch_history()
    steps = _on_dbos_tables(database, "SELECT COUNT(*) FROM {dbos}operation_outputs "
                            "WHERE workflow_uuid = :r", handle.result_run_id)
    # Two events (the two activity results): the first is a step, the second closed the run.
    assert steps == 1
    types = _event_types(history)
    assert types.count("EVENT_TYPE_ACTIVITY_TASK_COMPLETED") == 2
    assert types[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    assert types[-2] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"


async def test_history_is_whole_without_the_dbos_workflow_output(client: Client,
                                                                  database: str) -> None:
    # As after a crash between the close and the DBOS workflow's end: DBOS holds no output.
    async with Worker(client, task_queue=Q, workflows=[DoubleTwice], activities=[double]):
        handle = await client.start_workflow(DoubleTwice.run, 5, id=f"twice-{uuid.uuid4()}",
                                             task_queue=Q)
        assert await handle.result() == 20
        before = await handle.fetch_history()
        changed = _on_dbos_tables(database, "UPDATE {dbos}workflow_status SET output = NULL "
                                  "WHERE workflow_uuid = :r", handle.result_run_id)
        assert changed == 1
        after = await handle.fetch_history()
    assert after.to_json_dict() == before.to_json_dict()
    types = _event_types(after)
    assert types.count("EVENT_TYPE_ACTIVITY_TASK_COMPLETED") == 2
    assert types[-2:] == ["EVENT_TYPE_WORKFLOW_TASK_COMPLETED",
                          "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"]
