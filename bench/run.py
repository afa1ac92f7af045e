"""Run dbosify's benchmarks against their targets (DESIGN §4.3, §10).

``python -m bench`` (or ``bench/run``) runs every workload on SQLite and on Postgres and prints one
JSON line per workload per backend on stdout; progress goes to stderr. Each backend runs in its own
subprocess (DBOS is one object per process), where the bare-DBOS floor phase runs first on the
backend's fresh database, then DBOS is destroyed and dbosify runs on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")

PG_SERVER = os.environ.get("DBOSIFY_BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
PG_DATABASE = "dbosify_bench"
BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("W1", "W2", "W3")
WORKLOAD_TIMEOUT_S = 180.0

W1_TARGET_RATIO = 2.0
W2_TARGET_RATIO = 0.6
W3_TARGET_P50_MS = {"postgres": 20.0, "sqlite": 50.0}


# Output -------------------------------------------------------------------------------------------


def emit(line: dict[str, Any]) -> None:
    """One result line on stdout (everything else goes to stderr)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def skipped_lines(backend: str, workloads: list[str], reason: str) -> list[dict[str, Any]]:
    names = [n for w in workloads for n in (w, f"{w}_floor") if n != "W3_floor"]
    return [{"workload": n, "backend": backend, "n": 0, "skipped": reason, "target": None,
             "met": None} for n in names]


# Databases ----------------------------------------------------------------------------------------


def postgres_admin_url() -> str:
    return PG_SERVER.replace("postgresql://", "postgresql+psycopg://") + "/postgres"


def fresh_postgres() -> tuple[str | None, str]:
    """(URL of an empty ``dbosify_bench`` database, "") or (None, why Postgres is unusable)."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
    except Exception as err:
        return None, str(err).strip().splitlines()[0]
    finally:
        admin.dispose()
    return f"{PG_SERVER}/{PG_DATABASE}", ""


def fresh_sqlite(directory: Path) -> str:
    """A new SQLite file in WAL mode (as dbosify leaves it, so the floor runs on the same)."""
    path = directory / "bench.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    return f"sqlite:///{path}"


# Timing helpers -----------------------------------------------------------------------------------


async def sequential_latencies(call: Callable[[int], Awaitable[Any]], warmup: int,
                               n: int) -> list[float]:
    """Seconds per call of ``call(i)``, run one after the other, after ``warmup`` untimed calls."""
    for i in range(warmup):
        await call(-1 - i)
    samples: list[float] = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - start)
    return samples


async def concurrent_rate(start_one: Callable[[int], Awaitable[Any]],
                          wait_one: Callable[[Any], Awaitable[Any]], n: int) -> tuple[float, float]:
    """(workflows per second, elapsed seconds) for ``n`` runs started together, all awaited."""
    start = time.perf_counter()
    handles = await asyncio.gather(*(start_one(i) for i in range(n)))
    await asyncio.gather(*(wait_one(h) for h in handles))
    elapsed = time.perf_counter() - start
    return n / elapsed, elapsed


# The floor phase: bare DBOS ---------------------------------------------------------------------


async def floor_phase(backend: str, url: str, workloads: list[str], n1: int, n2: int,
                      warmup: int) -> dict[str, dict[str, Any]]:
    """W1_floor and W2_floor on bare DBOS; DBOS is destroyed afterwards."""
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    from bench import _workloads as wl
    from bench._stats import latency_fields

    results: dict[str, dict[str, Any]] = {}
    if not {"W1", "W2"} & set(workloads):
        return results
    config: DBOSConfig = {
        "name": "dbosify-bench-floor",
        "system_database_url": url,
        "executor_id": f"bench-floor-{os.getpid()}",
        "application_version": "bench-floor",
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()

    def launch() -> None:
        DBOS(config=config)
        DBOS.launch()

    # Off the loop, as dbosify launches it, so DBOS does not adopt this loop (DESIGN §10).
    await loop.run_in_executor(None, launch)
    try:
        if "W1" in workloads:
            logger.info("[%s] W1_floor: %d sequential one-step DBOS workflows", backend, n1)
            samples = await asyncio.wait_for(
                sequential_latencies(lambda i: wl.floor_one_step(i), warmup, n1),
                WORKLOAD_TIMEOUT_S)
            results["W1_floor"] = {"workload": "W1_floor", "backend": backend, "n": n1,
                                   **latency_fields(samples), "target": None, "met": None}
        if "W2" in workloads:
            logger.info("[%s] W2_floor: %d concurrent three-step DBOS workflows", backend, n2)
            # Warm the path once (connections, first-call imports) before timing.
            await (await DBOS.start_workflow_async(wl.floor_three_steps, 0)).get_result()

            async def start(i: int) -> Any:
                with SetWorkflowID(f"floor3-{uuid.uuid4()}"):
                    return await DBOS.start_workflow_async(wl.floor_three_steps, i)

            async def wait(handle: Any) -> Any:
                return await handle.get_result()

            rate, elapsed = await asyncio.wait_for(concurrent_rate(start, wait, n2),
                                                   WORKLOAD_TIMEOUT_S)
            results["W2_floor"] = {"workload": "W2_floor", "backend": backend, "n": n2,
                                   "workflows_per_s": round(rate, 2),
                                   "elapsed_s": round(elapsed, 3), "target": None, "met": None}
    finally:
        await loop.run_in_executor(None, lambda: DBOS.destroy(destroy_registry=False))
        # DBOS's async APIs set this loop's default executor to its own pool, which destroy()
        # shuts down; give the loop a new one for what follows.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
    return results


# The engine phase: dbosify ----------------------------------------------------------------------


async def engine_phase(backend: str, url: str, workloads: list[str], n1: int, n2: int, n3: int,
                       warmup: int, floors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """W1, W2 and W3 through dbosify's Client and Worker, with the ratios to the floors."""
    from bench import _workloads as wl
    from bench._stats import latency_fields
    from dbosify._runtime._process import close_current
    from dbosify.client import Client
    from dbosify.worker import Worker

    lines: list[dict[str, Any]] = []
    queue = "bench"
    client = await Client.connect(url)
    try:
        async with Worker(client, task_queue=queue, workflows=wl.ENGINE_WORKFLOWS,
                          activities=wl.ENGINE_ACTIVITIES):
            if "W1" in workloads:
                logger.info("[%s] W1: %d sequential one-activity workflows", backend, n1)

                async def one(i: int) -> Any:
                    return await client.execute_workflow(
                        wl.OneActivity.run, i, id=f"w1-{uuid.uuid4()}", task_queue=queue)

                samples = await asyncio.wait_for(sequential_latencies(one, warmup, n1),
                                                 WORKLOAD_TIMEOUT_S)
                line: dict[str, Any] = {"workload": "W1", "backend": backend, "n": n1,
                                        **latency_fields(samples)}
                floor = floors.get("W1_floor")
                ratio = line["p50_ms"] / floor["p50_ms"] if floor else None
                line.update({"floor_p50_ms": floor["p50_ms"] if floor else None,
                             "ratio": round(ratio, 3) if ratio is not None else None,
                             "target": f"ratio <= {W1_TARGET_RATIO}",
                             "met": ratio <= W1_TARGET_RATIO if ratio is not None else None})
                lines.append(line)
            if "W2" in workloads:
                logger.info("[%s] W2: %d concurrent three-activity workflows", backend, n2)
                await client.execute_workflow(wl.ThreeActivities.run, 0,
                                              id=f"w2-warm-{uuid.uuid4()}", task_queue=queue)

                async def start(i: int) -> Any:
                    return await client.start_workflow(
                        wl.ThreeActivities.run, i, id=f"w2-{uuid.uuid4()}", task_queue=queue)

                async def wait(handle: Any) -> Any:
                    return await handle.result()

                rate, elapsed = await asyncio.wait_for(concurrent_rate(start, wait, n2),
                                                       WORKLOAD_TIMEOUT_S)
                floor = floors.get("W2_floor")
                ratio = rate / floor["workflows_per_s"] if floor else None
                binding = backend == "postgres"
                lines.append({
                    "workload": "W2", "backend": backend, "n": n2,
                    "workflows_per_s": round(rate, 2), "elapsed_s": round(elapsed, 3),
                    "floor_workflows_per_s": floor["workflows_per_s"] if floor else None,
                    "ratio": round(ratio, 3) if ratio is not None else None,
                    "target": f"ratio >= {W2_TARGET_RATIO}"
                              + ("" if binding else " (applies on Postgres only)"),
                    "met": (ratio >= W2_TARGET_RATIO) if ratio is not None and binding else None,
                })
            if "W3" in workloads:
                logger.info("[%s] W3: %d sequential signal -> result round trips", backend, n3)
                samples = await asyncio.wait_for(
                    sequential_signal_round_trips(client, queue, n3, min(warmup, 5)),
                    WORKLOAD_TIMEOUT_S)
                limit = W3_TARGET_P50_MS[backend]
                fields = latency_fields(samples)
                lines.append({"workload": "W3", "backend": backend, "n": n3, **fields,
                              "target": f"p50_ms <= {limit:g}", "met": fields["p50_ms"] <= limit})
    finally:
        await asyncio.to_thread(close_current)
    return lines


async def sequential_signal_round_trips(client: Any, queue: str, n: int,
                                        warmup: int) -> list[float]:
    """Seconds from ``handle.signal()`` to ``handle.result()`` returning, one run at a time.

    Each run is started and known to be parked on ``wait_condition`` (its ``is_ready`` query
    answers True) before the clock starts, so only the signal's round trip is timed.
    """
    from bench import _workloads as wl

    samples: list[float] = []
    for i in range(-warmup, n):
        handle = await client.start_workflow(wl.AwaitSignal.run, id=f"w3-{uuid.uuid4()}",
                                             task_queue=queue)
        while not await handle.query(wl.AwaitSignal.is_ready):
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        await handle.signal(wl.AwaitSignal.release, i)
        result = await handle.result()
        elapsed = time.perf_counter() - start
        if result != i:
            raise AssertionError(f"W3 run returned {result!r}, expected {i!r}")
        if i >= 0:
            samples.append(elapsed)
    return samples


# One backend, in its own process -----------------------------------------------------------------


async def run_backend(backend: str, url: str, args: argparse.Namespace) -> int:
    workloads = args.workloads
    try:
        floors = await floor_phase(backend, url, workloads, args.n1, args.n2, args.warmup)
        lines = await engine_phase(backend, url, workloads, args.n1, args.n2, args.n3,
                                   args.warmup, floors)
    except Exception as err:
        logger.exception("[%s] benchmark failed", backend)
        emit({"workload": ",".join(workloads), "backend": backend, "n": 0,
              "error": f"{type(err).__name__}: {err}", "target": None, "met": False})
        return 1
    by_name = {line["workload"]: line for line in lines}
    for name in workloads:
        if name in by_name:
            emit(by_name[name])
        if f"{name}_floor" in floors:
            emit(floors[f"{name}_floor"])
    return 0


def child_main(args: argparse.Namespace) -> int:
    backend = args.child
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dbosify-bench-") as tmp:
            os.chdir(tmp)  # dbosify's embedded default lives under the cwd: keep it out of the repo
            return asyncio.run(run_backend(backend, fresh_sqlite(Path(tmp)), args))
    url, reason = fresh_postgres()
    if url is None:
        logger.warning("[postgres] skipped: Postgres at %s is unreachable (%s)", PG_SERVER,
                       reason)
        for line in skipped_lines(backend, args.workloads, f"Postgres unreachable: {reason}"):
            emit(line)
        return 0
    with tempfile.TemporaryDirectory(prefix="dbosify-bench-") as tmp:
        os.chdir(tmp)
        return asyncio.run(run_backend(backend, url, args))


# Entry point --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of W1,W2,W3")
    parser.add_argument("--n1", type=int, default=200, help="W1 runs (default 200)")
    parser.add_argument("--n2", type=int, default=500, help="W2 concurrent runs (default 500)")
    parser.add_argument("--n3", type=int, default=100, help="W3 round trips (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed W1 runs (default 20)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a binding target is missed")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.child:
        return child_main(args)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    status = 0
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(repo_root), os.environ.get("PYTHONPATH", "")) if p)}
    for var in ("DBOSIFY_DATABASE_URL", "DBOS_SYSTEM_DATABASE_URL"):
        env.pop(var, None)
    started = time.perf_counter()
    for backend in backends:
        command = [sys.executable, "-m", "bench", "--child", backend,
                   "--workloads", ",".join(args.workloads), "--n1", str(args.n1),
                   "--n2", str(args.n2), "--n3", str(args.n3), "--warmup", str(args.warmup)]
        logger.info("[%s] starting", backend)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for raw in proc.stdout:
            raw = raw.rstrip("\n")
            sys.stdout.write(raw + "\n")
            sys.stdout.flush()
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("error") or (args.strict and line.get("met") is False):
                status = 1
        if proc.wait() != 0:
            logger.error("[%s] benchmark process exited with %d", backend, proc.returncode)
            status = 1
    logger.info("all done in %.1f s", time.perf_counter() - started)
    return status
