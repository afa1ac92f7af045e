"""C1: wall time of ``dbosify runs`` (a read-only command, target: answers within 1 s) on a
database holding 1,000 runs, measured as a user sees it: a fresh ``dbosify`` process each time.

The database is made for C1 alone (1,000 started runs; a read lists them the same way whatever
their status), in a subprocess of its own, since DBOS is one object per process.
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
C1_TARGET_S = 1.0
PG_DATABASE = "dbosify_bench_cli"


async def _populate(url: str, n: int) -> None:
    from dbosify.client import Client

    client = await Client.connect(url)
    try:
        for i in range(n):
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


def cli_lines(backend: str, samples: int = 7) -> list[dict[str, Any]]:
    """C1 on one backend: ``dbosify runs`` (its default 100 rows) and ``--limit 1000``."""
    url = _fresh_database(backend)
    if url is None:
        return []
    logger.info("[%s] C1: %d runs into a fresh database", backend, C1_RUNS)
    subprocess.run([sys.executable, "-m", "bench._cli", url, str(C1_RUNS)], check=True)
    lines = []
    for extra in ([], ["--limit", str(C1_RUNS)]):
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dbosify.cli", "runs", "--database", url,
                                   *extra], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise AssertionError(f"dbosify runs failed: {done.stderr}")
        rows = len(done.stdout.splitlines()) - 2
        p50 = statistics.median(times)
        lines.append({"workload": "C1", "backend": backend, "command": " ".join(
            ["dbosify", "runs", *extra]), "runs_in_database": C1_RUNS, "rows_shown": rows,
            "n": samples, "p50_s": round(p50, 3), "max_s": round(max(times), 3),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "target": f"p50_s <= {C1_TARGET_S:g}", "met": p50 <= C1_TARGET_S})
    return lines


if __name__ == "__main__":
    asyncio.run(_populate(sys.argv[1], int(sys.argv[2])))
