"""CSV folder -> SQLite: order files dropped into a folder, appended to a SQLite table.

Run it (offline; everything goes into --workdir, a temporary folder by default)::

    python pipelines/csv_to_sqlite/pipeline.py [--workdir DIR] [--database URL]

It copies the shipped ``data/*.csv`` into ``DIR/incoming``, ingests them, then drops a third
day's file (as a new export would arrive) and runs again: the second run reads only the new
file. It prints one JSON line: what each run did and what the table holds.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

from dbosify import pipelines
from dbosify.client import Client

# The pipeline's activities, at module level so `dbosify worker` serves them with Orders.
from dbosify.pipelines import ingest_batch, start_ingest  # noqa: F401
from dbosify.worker import Worker

HERE = Path(__file__).resolve().parent
WORKDIR = Path(os.environ.get("CSV_TO_SQLITE_WORKDIR",
                              Path(tempfile.gettempdir()) / "dbosify-csv-to-sqlite"))


def _source(workdir: Path) -> pipelines.FileFolder:
    # Files sort by name (one per day), so a new day's file is read after the others.
    return pipelines.FileFolder(workdir / "incoming", "orders-*.csv",
                                types={"order_id": int, "quantity": int, "unit_price": float})


class Orders(pipelines.IncrementalIngest):
    """``WORKDIR/incoming/orders-*.csv`` appended to the ``orders`` table of
    ``WORKDIR/shop.sqlite``."""

    source = _source(WORKDIR)
    sink = pipelines.SqliteTable(WORKDIR / "shop.sqlite", "orders")
    write_disposition = "append"
    batch_size = 10


def make_orders(workdir: Path) -> type[pipelines.IncrementalIngest]:
    """``Orders``, pointed at ``workdir``."""
    Orders.source = _source(workdir)
    Orders.sink = pipelines.SqliteTable(workdir / "shop.sqlite", "orders")
    return Orders


def drop_new_day(incoming: Path) -> None:
    with (incoming / "orders-2024-03-03.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["order_id", "day", "product", "quantity", "unit_price"])
        for i in range(25, 31):
            writer.writerow([i, "2024-03-03", "tea", i % 4 + 1, "2.50"])


async def run(workdir: Path, database: str) -> dict[str, Any]:
    incoming = workdir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    for shipped in sorted((HERE / "data").glob("*.csv")):
        shutil.copy(shipped, incoming / shipped.name)
    orders = make_orders(workdir)
    client = await Client.connect(database)
    async with Worker(client, task_queue="csv-to-sqlite", workflows=[orders],
                      activities=pipelines.ACTIVITIES):
        first = await client.execute_workflow(orders.run,
                                              id=f"orders-{uuid.uuid4()}",
                                              task_queue="csv-to-sqlite")
        drop_new_day(incoming)
        second = await client.execute_workflow(orders.run,
                                               id=f"orders-{uuid.uuid4()}",
                                               task_queue="csv-to-sqlite")
    with sqlite3.connect(workdir / "shop.sqlite") as conn:
        total = conn.execute("SELECT count(*), count(DISTINCT order_id), "
                             "round(sum(quantity * unit_price), 2) FROM orders").fetchone()
        per_day = dict(conn.execute("SELECT day, count(*) FROM orders GROUP BY day"))
    return {"first_run_rows": first.rows, "second_run_rows": second.rows,
            "rows": total[0], "distinct_orders": total[1], "revenue": total[2],
            "per_day": per_day}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--database", default=None,
                        help="dbosify's database (default: a SQLite file in the workdir)")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir or WORKDIR
    if args.workdir is None and workdir.exists():
        shutil.rmtree(workdir)  # the default workdir starts afresh on every run
    workdir.mkdir(parents=True, exist_ok=True)
    database = args.database or f"sqlite:///{workdir / 'dbosify.sqlite'}"
    print(json.dumps(asyncio.run(run(workdir, database))))


if __name__ == "__main__":
    main()
