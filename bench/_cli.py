"""C1: wall time of the read-only commands ``dbosify runs``, ``show`` and ``result`` (target:
each answers within 1 s) on a database holding 1,000 runs, measured as a user sees it: a fresh
``dbosify`` process each time.

The database is made for C1 alone, in a subprocess of its own (DBOS is one object per process):
a worker runs ``C1_DONE`` runs of three activities to completion (the runs ``show`` and
``result`` read), then the rest are only started (a read lists them the same way whatever their
status).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")

C1_RUNS = 1000
C1_DONE = 20
C1_SHOWN = "c1-done-0000"
C1_TARGET_S = 1.0
PG_DATABASE = "dbosify_bench_cli"


async def _populate(url: str, n: int) -> None:
    from bench._workloads import ThreeActivities, bump
    from dbosify.client import Client
    from dbosify.worker import Worker

    client = await Client.connect(url)
    try:
        async with Worker(client, task_queue="bench-c1-done", workflows=[ThreeActivities],
                          activities=[bump]):
            for i in range(C1_DONE):
                await client.execute_workflow(ThreeActivities.run, i, id=f"c1-done-{i:04d}",
                                              task_queue="bench-c1-done")
        for i in range(n - C1_DONE):
            await client.start_workflow("BenchReport", {"day": i}, id=f"c1-{i:04d}",
                                        task_queue="bench-c1")
    finally:
        await client.close()


def _fresh_database(backend: str) -> str | None:
    if backend == "sqlite":
        path = Path.cwd() / "c1.sqlite"
        path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import sqlalchemy as sa

    from bench.run import PG_SERVER, postgres_admin_url

    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
    except Exception as err:
        logger.warning("[%s] C1 skipped: %s", backend, str(err).splitlines()[0])
        return None
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{PG_DATABASE}"


_COMMANDS = (["runs"], ["runs", "--limit", str(C1_RUNS)], ["show", C1_SHOWN],
             ["result", C1_SHOWN])


def cli_lines(backend: str, samples: int = 7) -> list[dict[str, Any]]:
    """C1 on one backend: ``dbosify runs`` (its default 100 rows), ``runs --limit 1000``, and
    ``show`` and ``result`` of a completed run of three activities."""
    url = _fresh_database(backend)
    if url is None:
        return []
    logger.info("[%s] C1: %d runs into a fresh database", backend, C1_RUNS)
    subprocess.run([sys.executable, "-m", "bench._cli", url, str(C1_RUNS)], check=True)
    # Timed as installed: with dbosify's bytecode compiled, which this machine's
    # PYTHONDONTWRITEBYTECODE=1 otherwise leaves to every process to redo (~0.1 s each).
    import compileall

    import dbosify

    compileall.compile_dir(str(Path(dbosify.__file__).parent), quiet=1)
    lines = []
    for command in _COMMANDS:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dbosify.cli", *command, "--database",
                                   url], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise AssertionError(f"dbosify {' '.join(command)} failed: {done.stderr}")
        # A table's rows (below its header and rule); result prints one line.
        rows = len(done.stdout.splitlines()) - (2 if command[0] != "result" else 0)
        p50 = statistics.median(times)
        lines.append({"workload": "C1", "backend": backend, "command": " ".join(
            ["dbosify", *command]), "runs_in_database": C1_RUNS, "rows_shown": rows,
            "n": samples, "p50_s": round(p50, 3), "max_s": round(max(times), 3),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "target": f"p50_s <= {C1_TARGET_S:g}", "met": p50 <= C1_TARGET_S})
    return lines


if __name__ == "__main__":
    asyncio.run(_populate(sys.argv[1], int(sys.argv[2])))
