"""IncrementalIngest killed with SIGKILL mid-batch and between batches, then recovered by a
new worker process: the sink holds every source row exactly once (issue 12, DESIGN §7).

A CSV folder (append) and a SQL query (merge) into a Postgres table, and the same into SQLite
(each on the engine backend of its sink). The worker kills itself on a printed line
(``_app.DIE_ON_ENV``): mid-batch is the line the sink prints inside its transaction, before
the commit; between batches is the line the workflow prints after a committed batch.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbosify.client import Client

from ._app import DIE_ON_ENV
from ._pipeline_app import CONFIG_ENV, READY_LINE

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("_pipeline_app.py")
FILES, ROWS_PER_FILE = 3, 150  # 450 rows in batches of 50: 9 batches, continued as new once.


@dataclass
class Backend:
    name: str
    url: str
    """The engine's database; the sink (and the SQL source) live beside it."""
    root: Path

    def sink(self, table: str) -> list[str]:
        if self.name == "postgres":
            return ["postgres", self.url, table]
        return ["sqlite", str(self.root / "sink.sqlite"), table]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.name == "postgres":
            with psycopg.connect(self.url) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        conn = sqlite3.connect(self.root / "sink.sqlite")
        try:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()


@pytest.fixture
def backend(database: str, tmp_path: Path) -> Backend:
    return Backend("sqlite" if database.startswith("sqlite") else "postgres", database, tmp_path)


class Worker:
    """One worker subprocess; ``die_on``: it SIGKILLs itself on the line containing it."""

    def __init__(self, backend: Backend, queue: str, config: dict[str, Any],
                 die_on: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DBOSIFY_DATABASE_URL", "DBOS_SYSTEM_DATABASE_URL", DIE_ON_ENV)}
        env[CONFIG_ENV] = json.dumps(config)
        env["PYTHONUNBUFFERED"] = "1"
        if die_on is not None:
            env[DIE_ON_ENV] = die_on
        self.log = backend.root / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.lines: list[str] = []
        # The same identity for every process: a restarted worker recovers its runs at once.
        self.popen = subprocess.Popen(
            [sys.executable, str(APP), backend.url, queue, "e2e-pipeline"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=backend.root, text=True)

    async def wait_line(self, text: str, timeout: float = 60.0) -> str:
        """The first output line containing ``text``."""
        loop = asyncio.get_running_loop()
        assert self.popen.stdout is not None
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.popen.stdout.readline),
                                          deadline - loop.time())
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r}; output:\n{''.join(self.lines)[-3000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
        if self.popen.stdout is not None and not self.popen.stdout.closed:
            self.popen.stdout.close()


def write_csv_folder(folder: Path) -> list[tuple[int, float]]:
    folder.mkdir()
    rows = []
    for f in range(FILES):
        with (folder / f"part-{f}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "amount", "label"])
            for i in range(f * ROWS_PER_FILE, (f + 1) * ROWS_PER_FILE):
                writer.writerow([i, i / 4, f"row {i}"])
                rows.append((i, i / 4))
    return rows


def write_sql_source(backend: Backend, table: str) -> tuple[str, list[tuple[int, float]]]:
    rows = [(i, i / 4) for i in range(FILES * ROWS_PER_FILE)]
    if backend.name == "postgres":
        with psycopg.connect(backend.url) as conn:
            conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, amount double "
                         "precision, label text)")
            with conn.cursor().copy(f"COPY {table} (id, amount, label) FROM STDIN") as copy:
                for i, amount in rows:
                    copy.write_row((i, amount, f"row {i}"))
        return backend.url, rows
    path = backend.root / "source.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount REAL, label TEXT)")
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)",
                     [(i, a, f"row {i}") for i, a in rows])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}", rows


@pytest.mark.parametrize("kill", ["mid-batch", "between-batches"])
@pytest.mark.parametrize("source", ["csv-append", "sql-merge"])
async def test_ingest_killed_and_recovered_holds_every_row_once(
        backend: Backend, source: str, kill: str) -> None:
    table = f"sink_{uuid.uuid4().hex[:8]}"
    if source == "csv-append":
        expected = write_csv_folder(backend.root / "incoming")
        config: dict[str, Any] = {"source": ["csv", str(backend.root / "incoming")],
                                  "disposition": "append"}
    else:
        source_table = f"source_{uuid.uuid4().hex[:8]}"
        url, expected = write_sql_source(backend, source_table)
        config = {"source": ["sql", url, f"SELECT id, amount, label FROM {source_table}"],
                  "disposition": "merge"}
    config["sink"] = backend.sink(table)
    # Mid-batch: the fourth batch is written but not committed. Between batches: the third is
    # committed, the fourth not yet read.
    die_on = "PIPELINE_BEFORE_COMMIT 4;" if kill == "mid-batch" else "PIPELINE_COMMITTED 3;"
    queue = f"pipe-{uuid.uuid4().hex[:6]}"
    first = Worker(backend, queue, config, die_on=die_on)
    second: Worker | None = None
    try:
        await first.wait_line(READY_LINE)
        client = await Client.connect(backend.url)
        handle = await client.start_workflow("E2EIngest", id=f"ingest-{table}",
                                             task_queue=queue)
        await first.wait_line(die_on)
        assert first.popen.wait(timeout=30) == -9, "the worker was not killed on the line"
        committed = backend.query(f'SELECT count(*) FROM "{table}"')[0][0]
        assert committed == 150, "the kill came at another point than the test meant"
        second = Worker(backend, queue, config)
        try:
            result = await asyncio.wait_for(handle.result(), 90)
        except asyncio.TimeoutError:
            second.stop()
            assert second.popen.stdout is not None
            raise AssertionError("the run did not finish after the restart; the new worker "
                                 f"said:\n{second.popen.stdout.read()[-4000:]}") from None
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert result["rows"] == len(expected)
    got = backend.query(f'SELECT id, amount FROM "{table}" ORDER BY id')
    assert got == expected  # every source row, exactly once
    assert backend.query(f'SELECT count(*) FROM "{table}"') == [(len(expected),)]
