"""A worker process serving one IncrementalIngest, for the pipeline kill-and-recover tests.

Run as ``python _pipeline_app.py DATABASE_URL TASK_QUEUE IDENTITY``; the pipeline comes from
the JSON in ``DBOSIFY_E2E_PIPELINE``: ``{"source": ["csv", FOLDER] | ["sql", URL, QUERY],
"sink": ["postgres", URL, TABLE] | ["sqlite", PATH, TABLE], "disposition": ...}``. It prints
``PIPELINE_BEFORE_COMMIT <n>;`` from inside the sink's transaction (the n-th batch this process
writes, not yet committed) and ``PIPELINE_COMMITTED <n>;`` from the workflow after its n-th
batch is committed; with ``DBOSIFY_E2E_DIE_ON`` set the process SIGKILLs itself on that line.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

from dbosify import pipelines
from dbosify.client import Client
from dbosify.pipelines import BatchWrite, IncrementalIngest, IngestState
from dbosify.worker import Worker

sys.path.insert(0, str(Path(__file__).parent))
from _app import DIE_ON_ENV, _DieOn

CONFIG_ENV = "DBOSIFY_E2E_PIPELINE"
READY_LINE = "PIPELINE_WORKER_READY"
_writes = itertools.count(1)


class _Announcing:
    def before_commit(self, batch: BatchWrite) -> None:
        print(f"PIPELINE_BEFORE_COMMIT {next(_writes)}; rows {len(batch.rows)}", flush=True)


class AnnouncingPostgres(_Announcing, pipelines.PostgresTable):
    pass


class AnnouncingSqlite(_Announcing, pipelines.SqliteTable):
    pass


def _build(config: dict[str, Any]) -> type[IncrementalIngest]:
    source_kind, *source_args = config["source"]
    if source_kind == "csv":
        reader: pipelines.Source = pipelines.FileFolder(source_args[0], "*.csv",
                                                        types={"id": int, "amount": float})
    else:
        reader = pipelines.SqlQuery(source_args[0], source_args[1], cursor="id")
    sink_kind, target, table = config["sink"]
    writer: pipelines.Sink = (AnnouncingPostgres(target, table) if sink_kind == "postgres"
                              else AnnouncingSqlite(target, table))
    disposition = config["disposition"]

    class E2EIngest(IncrementalIngest):
        source = reader
        sink = writer
        batch_size = 50
        batches_per_run = 5
        write_disposition = disposition
        primary_key = ("id",)

        def on_batch_committed(self, state: IngestState) -> None:
            print(f"PIPELINE_COMMITTED {state.batches}; cursor {state.cursor}", flush=True)

    return E2EIngest


async def serve(url: str, task_queue: str, identity: str) -> None:
    pipeline = _build(json.loads(os.environ[CONFIG_ENV]))
    client = await Client.connect(url)
    async with Worker(client, task_queue=task_queue, workflows=[pipeline],
                      activities=pipelines.ACTIVITIES, identity=identity):
        print(READY_LINE, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if os.environ.get(DIE_ON_ENV):
        sys.stdout = _DieOn(sys.stdout, os.environ[DIE_ON_ENV])  # type: ignore[assignment]
    asyncio.run(serve(*sys.argv[1:4]))
