"""P1: a CSV file into a Postgres table through IncrementalIngest (append), beside a plain
``COPY`` of the same file into a table of the same columns, measured in the same run."""

from __future__ import annotations

import asyncio
import csv
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")

P1_TARGET_RATIO = 0.5
P1_BATCH_SIZE = 100_000
P1_ROUNDS = 3
_COLUMNS = "id bigint, name text, amount double precision, day text"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "amount", "day"])
        for i in range(rows):
            writer.writerow([i, f"customer {i % 9973}", f"{(i * 37) % 100000 / 100:.2f}",
                             f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}"])


def plain_copy(url: str, path: Path, table: str) -> float:
    """Seconds to COPY the file (streamed from the client, as the pipeline's rows are)."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE TABLE {table} ({_COLUMNS})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy, \
                path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        return time.perf_counter() - started


def count(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


async def p1_line(url: str, rows: int, base: dict[str, Any],
                  rounds: int = P1_ROUNDS) -> dict[str, Any]:
    """Measure P1 on the Postgres database at ``url`` (the engine's own database too): plain
    COPY and IncrementalIngest alternate ``rounds`` times, each into a table of its own, so a
    change of load weighs on both alike; the rates are the medians."""
    from dbosify import pipelines
    from dbosify._runtime._process import close_current
    from dbosify.client import Client
    from dbosify.worker import Worker

    copy_times: list[float] = []
    ingest_times: list[float] = []
    batches = 0
    with tempfile.TemporaryDirectory(prefix="dbosify-p1-") as tmp:
        folder = Path(tmp) / "incoming"
        folder.mkdir()
        path = folder / "rows.csv"
        logger.info("[postgres] P1: writing %d CSV rows", rows)
        await asyncio.to_thread(write_csv, path, rows)
        client = await Client.connect(url)
        try:
            for r in range(rounds):
                suffix = uuid.uuid4().hex[:8]
                plain_table, pipeline_table = f"p1_copy_{suffix}", f"p1_ingest_{suffix}"
                ingest: Any = type(f"P1Ingest{r}", (pipelines.IncrementalIngest,), {
                    "source": pipelines.FileFolder(folder, "*.csv",
                                                   types={"id": int, "amount": float}),
                    "sink": pipelines.PostgresTable(url, pipeline_table),
                    "batch_size": P1_BATCH_SIZE})
                logger.info("[postgres] P1 round %d/%d: plain COPY", r + 1, rounds)
                copy_times.append(await asyncio.to_thread(plain_copy, url, path, plain_table))
                logger.info("[postgres] P1 round %d/%d: IncrementalIngest", r + 1, rounds)
                async with Worker(client, task_queue=f"bench-p1-{r}", workflows=[ingest],
                                  activities=pipelines.ACTIVITIES):
                    started = time.perf_counter()
                    result = await client.execute_workflow(ingest.run, id=f"p1-{suffix}",
                                                           task_queue=f"bench-p1-{r}")
                    ingest_times.append(time.perf_counter() - started)
                copied, ingested = count(url, plain_table), count(url, pipeline_table)
                if copied != rows or ingested != rows or result.rows != rows:
                    raise AssertionError(f"P1 lost rows: COPY {copied}, ingest {ingested} "
                                         f"(said {result.rows}) of {rows}")
                batches = result.batches
        finally:
            await asyncio.to_thread(close_current)
    copy_s, ingest_s = statistics.median(copy_times), statistics.median(ingest_times)
    copy_rate, ingest_rate = rows / copy_s, rows / ingest_s
    ratio = ingest_rate / copy_rate
    return {"workload": "P1", **base, "n": rows, "rounds": rounds,
            "batch_size": P1_BATCH_SIZE, "batches": batches, "rows_per_s": round(ingest_rate),
            "seconds": round(ingest_s, 2), "copy_rows_per_s": round(copy_rate),
            "copy_seconds": round(copy_s, 2), "ratio": round(ratio, 3),
            "target": f"ratio >= {P1_TARGET_RATIO:g} (rows/s / plain COPY rows/s)",
            "met": ratio >= P1_TARGET_RATIO}
