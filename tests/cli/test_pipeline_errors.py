"""A pipeline run that fails on bad input, seen from the CLI: a sink table whose columns
conflict with the source's, an unreachable source. Each is one line, exit 1, nothing written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from dbosify import pipelines
from dbosify.client import Client
from dbosify.common import RetryPolicy
from dbosify.worker import Worker
from tests.cli.conftest import Q, ainvoke
from tests.pipelines.conftest import SinkKit

_FAST = RetryPolicy(initial_interval=timedelta(milliseconds=20), backoff_coefficient=1.0,
                    maximum_attempts=2)


async def test_conflicting_sink_and_unreachable_source_are_one_line_exit_1(
        database: str, tmp_path: Path) -> None:
    kit = SinkKit(database, tmp_path)
    table = kit.table("conflict")
    # The table exists with "amount" a number; the source brings text there.
    seed: Any = type("CliSeed", (pipelines.IncrementalIngest,), {
        "source": pipelines.IterableSource([{"id": 1, "amount": 2.5}]),
        "sink": kit.sink(table)})
    conflict: Any = type("CliConflict", (pipelines.IncrementalIngest,), {
        "source": pipelines.IterableSource([{"id": 2, "amount": "lots"}]),
        "sink": kit.sink(table), "retry_policy": _FAST})
    unreachable: Any = type("CliUnreachable", (pipelines.IncrementalIngest,), {
        "source": pipelines.HttpJson("http://127.0.0.1:9/orders", timeout=2),
        "sink": kit.sink(kit.table("never")), "retry_policy": _FAST})
    client = await Client.connect(database)
    try:
        async with Worker(client, task_queue=Q, workflows=[seed, conflict, unreachable],
                          activities=pipelines.ACTIVITIES):
            out = await ainvoke("start", "CliSeed", "--id", "seed", "--task-queue", Q,
                                "--database", database, "--wait")
            assert out.exit_code == 0, out.stderr
            outcomes = {name: await ainvoke("start", name, "--id", name, "--task-queue", Q,
                                            "--database", database, "--wait")
                        for name in ("CliConflict", "CliUnreachable")}
    finally:
        await client.close()  # type: ignore[attr-defined]
    for name, out in outcomes.items():
        assert out.exit_code == 1, (name, out)
        assert len(out.stderr.splitlines()) == 1, out.stderr
        assert out.stderr.startswith(f"dbosify: error: workflow {name!r} failed: "), out.stderr
    assert "amount" in outcomes["CliConflict"].stderr
    assert "cannot reach http://127.0.0.1:9/orders" in outcomes["CliUnreachable"].stderr
    # Nothing of the failed batch was written: the table holds the seed row only.
    assert kit.query(f'SELECT id FROM "{table}"') == [(1,)]
