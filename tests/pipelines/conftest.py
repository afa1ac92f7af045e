"""Fixtures for the pipeline tests: a worker serving a test's pipelines, and a sink on the
test's backend (a SQLite file beside a SQLite engine, a Postgres table beside Postgres)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbosify import pipelines
from dbosify.client import Client
from dbosify.pipelines import IncrementalIngest
from dbosify.worker import Worker


class SinkKit:
    """Makes a sink on the test's backend and reads it back."""

    def __init__(self, database: str, tmp_path: Path) -> None:
        self.database = database
        self.postgres = database.startswith("postgresql")
        self.path = tmp_path / "sink.sqlite"

    def sink(self, table: str) -> pipelines.Sink:
        if self.postgres:
            return pipelines.PostgresTable(self.database, table)
        return pipelines.SqliteTable(self.path, table)

    def table(self, stem: str) -> str:
        """A table name no earlier test used (Postgres tables outlive a test)."""
        return f"{stem}_{uuid.uuid4().hex[:8]}"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.postgres:
            with psycopg.connect(self.database) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        conn = sqlite3.connect(self.path)
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    def columns(self, table: str) -> list[str]:
        if self.postgres:
            return [r[0] for r in self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = "
                f"'{table}' ORDER BY ordinal_position")]
        return [r[1] for r in self.query(f'PRAGMA table_info("{table}")')]


def pipeline(name: str, **settings: Any) -> type[IncrementalIngest]:
    """An IncrementalIngest subclass with these class settings (source, sink, ...)."""
    return type(name, (IncrementalIngest,), settings)


async def run(client: Client, cls: type[IncrementalIngest]) -> pipelines.IngestResult:
    """Run one ingest to its end on queue ``q`` (the queue of :func:`serve`'s worker)."""
    result: pipelines.IngestResult = await client.execute_workflow(
        cls.run, id=f"ingest-{uuid.uuid4()}", task_queue="q")
    return result


@pytest.fixture
def kit(database: str, tmp_path: Path) -> SinkKit:
    return SinkKit(database, tmp_path)


Run = Callable[..., Any]


@pytest.fixture
async def serve(client: Client) -> AsyncIterator[Callable[[Sequence[type], Sequence[Any]],
                                                          Worker]]:
    """``async with serve([Pipeline, ...], [extra activities]):`` a worker on queue ``q``."""

    def make(workflows: Sequence[type], activities: Sequence[Any] = ()) -> Worker:
        return Worker(client, task_queue="q", workflows=list(workflows),
                      activities=[*pipelines.ACTIVITIES, *activities])

    yield make
