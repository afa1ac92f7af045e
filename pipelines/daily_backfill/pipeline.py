"""Date-partitioned backfill: one activity per day, four at a time, each retried on its own.

Offline, on SQLite::

    python pipelines/daily_backfill/pipeline.py [--workdir DIR] [--start 2024-01-01]
                                                [--end 2024-01-31] [--concurrency 4]

The example makes its own raw data: a SQLite table of page views over the month (a few
thousand rows, the same every time). ``DailyViews`` computes each day's totals into
``daily_views``; the activity replaces its day's row, so a day computed twice (a retry, a
re-run of the backfill) ends up the same. One day (the 13th) fails on its first attempt,
as a flaky upstream would: it alone is retried. It prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import shutil
import sqlite3
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbosify import activity, pipelines
from dbosify.client import Client
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

WORKDIR = Path(tempfile.gettempdir()) / "dbosify-daily-backfill"
DATA: dict[str, Path] = {}
"""Where the warehouse file is (set by ``main``; the activity runs in this process)."""
ATTEMPTS: dict[str, int] = {}


def make_raw_data(path: Path, start: datetime.date, days: int) -> None:
    rng = random.Random(2024)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS page_views (day TEXT, page TEXT, "
                     "user_id INTEGER)")
        conn.execute("DELETE FROM page_views")
        rows = [((start + timedelta(days=d)).isoformat(), rng.choice(["/", "/docs", "/blog"]),
                 rng.randint(1, 300)) for d in range(days) for _ in range(rng.randint(50, 150))]
        conn.executemany("INSERT INTO page_views VALUES (?, ?, ?)", rows)


@activity.defn
async def compute_day(day: str) -> dict[str, Any]:
    """One day's totals into ``daily_views`` (replacing that day's row: idempotent)."""
    ATTEMPTS[day] = ATTEMPTS.get(day, 0) + 1
    if day.endswith("-13") and activity.info().attempt == 1:
        raise ApplicationError(f"upstream not ready for {day}", type="NotReady")
    with sqlite3.connect(DATA["warehouse"], timeout=30) as conn:
        views, users = conn.execute("SELECT count(*), count(DISTINCT user_id) FROM page_views "
                                    "WHERE day = ?", (day,)).fetchone()
        conn.execute("CREATE TABLE IF NOT EXISTS daily_views (day TEXT PRIMARY KEY, "
                     "views INTEGER, users INTEGER)")
        conn.execute("INSERT OR REPLACE INTO daily_views VALUES (?, ?, ?)", (day, views, users))
    return {"views": views, "users": users}


class DailyViews(pipelines.Backfill):
    activity = compute_day
    concurrency = 4
    retry_policy = RetryPolicy(initial_interval=timedelta(milliseconds=200),
                               maximum_attempts=3)


async def run(database: str, start: str, end: str) -> dict[str, Any]:
    days = pipelines.date_partitions(start, end)
    client = await Client.connect(database)
    async with Worker(client, task_queue="daily-backfill", workflows=[DailyViews],
                      activities=[compute_day]):
        handle = await client.start_workflow(DailyViews.run, days,
                                             id=f"daily-views-{uuid.uuid4()}",
                                             task_queue="daily-backfill")
        result: pipelines.BackfillResult = await handle.result()
        progress = await handle.query(DailyViews.progress)
    with sqlite3.connect(DATA["warehouse"]) as conn:
        stored, views = conn.execute("SELECT count(*), sum(views) FROM daily_views").fetchone()
        raw = conn.execute("SELECT count(*) FROM page_views").fetchone()[0]
    return {"partitions": len(days), "done": len(progress.done), "failed": result.failed,
            "retried": {d: n for d, n in ATTEMPTS.items() if n > 1},
            "days_stored": stored, "views": views, "raw_rows": raw}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--database", default=None,
                        help="dbosify's database (default: a SQLite file in the workdir)")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-01-31")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    workdir: Path = args.workdir or WORKDIR
    if args.workdir is None and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    DATA["warehouse"] = workdir / "warehouse.sqlite"
    first = datetime.date.fromisoformat(args.start)
    days = (datetime.date.fromisoformat(args.end) - first).days + 1
    make_raw_data(DATA["warehouse"], first, days)
    DailyViews.concurrency = args.concurrency
    database = args.database or f"sqlite:///{workdir / 'dbosify.sqlite'}"
    print(json.dumps(asyncio.run(run(database, args.start, args.end))))


if __name__ == "__main__":
    main()
