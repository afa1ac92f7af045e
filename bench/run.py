"""Run dbosify's benchmarks against their targets (DESIGN §4.3, §10).

``python -m bench`` (or ``bench/run``) runs every workload on SQLite and on Postgres and prints one
JSON line per workload per backend on stdout; progress goes to stderr. Each backend runs in its own
subprocess (DBOS is one object per process) on a fresh database. The bare-DBOS floors run in the
same process and on the same database, with dbosify closed: blocks of floor and dbosify runs
alternate, so the machine's load weighs on both alike.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench")

PG_SERVER = os.environ.get("DBOSIFY_BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
PG_DATABASE = "dbosify_bench"
BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("W1", "L1", "W2", "W3", "N1", "N2", "C1", "P1")
WORKLOAD_TIMEOUT_S = 180.0

W1_TARGET_RATIO = 2.0
L1_TARGET_RATIO = 1.0
"""A local activity must cost less than a normal one (issue 9 §4)."""
W2_TARGET_RATIO = 0.6
W3_TARGET_P50_MS = {"postgres": 20.0, "sqlite": 50.0}


# Output -------------------------------------------------------------------------------------------


def emit(line: dict[str, Any]) -> None:
    """One result line on stdout (everything else goes to stderr)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def skipped_lines(backend: str, workloads: list[str], reason: str) -> list[dict[str, Any]]:
    names = [n for w in workloads for n in (w, f"{w}_floor")
             if n not in ("W3_floor", "C1_floor", "P1_floor") and not n.startswith("N")
             and (n != "P1" or backend == "postgres")]
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


@dataclass
class Latencies:
    """Sequential call latencies (seconds) and the process CPU time they used."""

    samples: list[float] = field(default_factory=list)
    cpu_s: float = 0.0

    def extend(self, other: Latencies) -> None:
        self.samples.extend(other.samples)
        self.cpu_s += other.cpu_s

    def fields(self) -> dict[str, float]:
        from bench._stats import latency_fields

        return {**latency_fields(self.samples),
                "cpu_ms_per_run": round(self.cpu_s / len(self.samples) * 1000, 3)}


class StatementCounter:
    """SQL statements sent through SQLAlchemy in this process (dbosify's and DBOS's alike; not
    counted: connection pings, BEGIN and COMMIT), so a change in statements per run shows."""

    count = 0

    @classmethod
    def install(cls) -> None:
        import sqlalchemy as sa

        def counted(*_: Any) -> None:
            cls.count += 1

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", counted)


@dataclass
class Throughput:
    """Runs started together and all awaited."""

    n: int
    elapsed_s: float
    cpu_s: float
    statements: int = 0

    @property
    def rate(self) -> float:
        return self.n / self.elapsed_s

    def add(self, other: Throughput | None) -> Throughput:
        if other is None:
            return self
        return Throughput(self.n + other.n, self.elapsed_s + other.elapsed_s,
                          self.cpu_s + other.cpu_s, self.statements + other.statements)

    def fields(self) -> dict[str, float]:
        return {"workflows_per_s": round(self.rate, 2), "elapsed_s": round(self.elapsed_s, 3),
                "cpu_ms_per_run": round(self.cpu_s / self.n * 1000, 3),
                "statements_per_run": round(self.statements / self.n, 2)}


async def sequential_latencies(call: Callable[[int], Awaitable[Any]], warmup: int,
                               n: int) -> Latencies:
    """Seconds per call of ``call(i)``, run one after the other, after ``warmup`` untimed calls."""
    for i in range(warmup):
        await call(-1 - i)
    result = Latencies()
    cpu = time.process_time()
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        result.samples.append(time.perf_counter() - start)
    result.cpu_s = time.process_time() - cpu
    return result


async def alternating_latencies(calls: Sequence[Callable[[int], Awaitable[Any]]], warmup: int,
                                n: int) -> list[Latencies]:
    """As :func:`sequential_latencies` for several calls taken in turn (one of each, then
    again), so each sees the same load and the same state of the database."""
    for i in range(warmup):
        for call in calls:
            await call(-1 - i)
    results = [Latencies() for _ in calls]
    for i in range(n):
        for call, result in zip(calls, results, strict=True):
            cpu = time.process_time()
            start = time.perf_counter()
            await call(i)
            result.samples.append(time.perf_counter() - start)
            result.cpu_s += time.process_time() - cpu
    return results


async def concurrent_rate(start_one: Callable[[int], Awaitable[Any]],
                          wait_one: Callable[[Any], Awaitable[Any]], n: int) -> Throughput:
    """``n`` runs started together (``start_one``), then all awaited (``wait_one``)."""
    cpu = time.process_time()
    statements = StatementCounter.count
    start = time.perf_counter()
    handles = await asyncio.gather(*(start_one(i) for i in range(n)))
    await asyncio.gather(*(wait_one(h) for h in handles))
    return Throughput(n, time.perf_counter() - start, time.process_time() - cpu,
                      StatementCounter.count - statements)


# Bare DBOS (the floors) ---------------------------------------------------------------------------


async def floor_block(url: str, w1_n: int, warmup: int, w2_n: int) -> tuple[Latencies,
                                                                           Throughput | None]:
    """W1_floor (``w1_n`` calls) and W2_floor (when ``w2_n``) on bare DBOS, launched for the
    block and destroyed after it (dbosify is closed meanwhile)."""
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    from bench import _workloads as wl

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
        w1 = Latencies()
        if w1_n:
            w1 = await asyncio.wait_for(
                sequential_latencies(lambda i: wl.floor_one_step(i), warmup, w1_n),
                WORKLOAD_TIMEOUT_S)
        w2 = None
        if w2_n:
            # Warm the path once (connections, first-call imports) before timing.
            await (await DBOS.start_workflow_async(wl.floor_three_steps, 0)).get_result()

            async def start(i: int) -> Any:
                with SetWorkflowID(f"floor3-{uuid.uuid4()}"):
                    return await DBOS.start_workflow_async(wl.floor_three_steps, i)

            async def wait(handle: Any) -> Any:
                return await handle.get_result()

            w2 = await asyncio.wait_for(concurrent_rate(start, wait, w2_n), WORKLOAD_TIMEOUT_S)
    finally:
        await loop.run_in_executor(None, lambda: DBOS.destroy(destroy_registry=False))
        # DBOS's async APIs set this loop's default executor to its own pool, which destroy()
        # shuts down; give the loop a new one for what follows.
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
    return w1, w2


# dbosify ------------------------------------------------------------------------------------------


async def engine_block(url: str, w1_n: int, warmup: int, w2_n: int,
                       w3_n: int, l1_n: int = 0
                       ) -> tuple[Latencies, Throughput | None, Latencies, Latencies]:
    """W1, L1, W2 and W3 through dbosify's Client and Worker; dbosify is closed after the
    block."""
    from bench import _workloads as wl
    from dbosify._runtime._process import close_current
    from dbosify.client import Client
    from dbosify.worker import Worker

    queue = "bench"
    client = await Client.connect(url)
    try:
        async with Worker(client, task_queue=queue, workflows=wl.ENGINE_WORKFLOWS,
                          activities=wl.ENGINE_ACTIVITIES):
            async def one(i: int) -> Any:
                return await client.execute_workflow(
                    wl.OneActivity.run, i, id=f"w1-{uuid.uuid4()}", task_queue=queue)

            async def one_local(i: int) -> Any:
                return await client.execute_workflow(
                    wl.OneLocalActivity.run, i, id=f"l1-{uuid.uuid4()}", task_queue=queue)

            w1, l1 = Latencies(), Latencies()
            if w1_n and l1_n:
                # L1 is compared with W1: taken in turns, run by run.
                w1, l1 = await asyncio.wait_for(
                    alternating_latencies([one, one_local], warmup, w1_n), WORKLOAD_TIMEOUT_S)
            elif w1_n:
                w1 = await asyncio.wait_for(sequential_latencies(one, warmup, w1_n),
                                            WORKLOAD_TIMEOUT_S)
            elif l1_n:
                l1 = await asyncio.wait_for(sequential_latencies(one_local, warmup, l1_n),
                                            WORKLOAD_TIMEOUT_S)
            w2 = None
            if w2_n:
                await client.execute_workflow(wl.ThreeActivities.run, 0,
                                              id=f"w2-warm-{uuid.uuid4()}", task_queue=queue)

                async def start(i: int) -> Any:
                    return await client.start_workflow(
                        wl.ThreeActivities.run, i, id=f"w2-{uuid.uuid4()}", task_queue=queue)

                async def wait(handle: Any) -> Any:
                    return await handle.result()

                w2 = await asyncio.wait_for(concurrent_rate(start, wait, w2_n),
                                            WORKLOAD_TIMEOUT_S)
            w3 = Latencies()
            if w3_n:
                w3 = await asyncio.wait_for(
                    signal_round_trips(client, queue, w3_n, min(warmup, 5)), WORKLOAD_TIMEOUT_S)
    finally:
        await asyncio.to_thread(close_current)
    return w1, w2, w3, l1


async def signal_round_trips(client: Any, queue: str, n: int, warmup: int) -> Latencies:
    """Seconds from ``handle.signal()`` to ``handle.result()`` returning, one run at a time.

    Each run is started and known to be parked on ``wait_condition`` (its ``is_ready`` query
    answers True) before the clock starts, so only the signal's round trip is timed.
    """
    from bench import _workloads as wl

    result = Latencies()
    for i in range(-warmup, n):
        handle = await client.start_workflow(wl.AwaitSignal.run, id=f"w3-{uuid.uuid4()}",
                                             task_queue=queue)
        while not await handle.query(wl.AwaitSignal.is_ready):
            await asyncio.sleep(0.001)
        cpu = time.process_time()
        start = time.perf_counter()
        await handle.signal(wl.AwaitSignal.release, i)
        value = await handle.result()
        elapsed = time.perf_counter() - start
        if value != i:
            raise AssertionError(f"W3 run returned {value!r}, expected {i!r}")
        if i >= 0:
            result.samples.append(elapsed)
            result.cpu_s += time.process_time() - cpu
    return result


# One backend, in its own process -----------------------------------------------------------------


def split(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` near-equal counts."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def measure(backend: str, url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every requested workload on one backend, as result lines.

    W1 alternates between the floor and dbosify in ``rounds`` blocks, so a change in the
    machine's load during the run weighs on both alike; W2 runs in the first ``w2_rounds``
    rounds (floor, then dbosify, each time; the rates are over all of them), W3 in the last.
    """
    workloads = set(args.workloads)
    rounds = max(1, args.rounds)
    w1_parts = split(args.n1 if "W1" in workloads else 0, rounds)
    # L1 runs in turns with W1 in each dbosify block, so the ratio compares like with like.
    l1_parts = split(args.n1 if "L1" in workloads else 0, rounds)
    l1 = Latencies()
    w1, w1_floor = Latencies(), Latencies()
    w2 = w2_floor = None
    w3 = Latencies()
    # N1 alternates with W1's blocks, so the two see the same load.
    n1_parts = split(args.nb1 if "N1" in workloads else 0, rounds)
    n1 = Latencies()
    for r in range(rounds):
        warmup = args.warmup if r == 0 else min(args.warmup, 5)
        w2_n = args.n2 if "W2" in workloads and r < args.w2_rounds else 0
        w3_n = args.n3 if "W3" in workloads and r == rounds - 1 else 0
        if w1_parts[r] or w2_n:
            logger.info("[%s] round %d/%d: bare DBOS (W1_floor %d%s)", backend, r + 1, rounds,
                        w1_parts[r], f", W2_floor {w2_n}" if w2_n else "")
            part, tp = await floor_block(url, w1_parts[r], warmup, w2_n)
            w1_floor.extend(part)
            w2_floor = tp.add(w2_floor) if tp else w2_floor
        if w1_parts[r] or w2_n or w3_n or l1_parts[r]:
            logger.info("[%s] round %d/%d: dbosify (W1 %d%s%s)", backend, r + 1, rounds,
                        w1_parts[r], f", W2 {w2_n}" if w2_n else "",
                        f", W3 {w3_n}" if w3_n else "")
            part, tp, sig, local = await engine_block(url, w1_parts[r], warmup, w2_n, w3_n,
                                                      l1_parts[r])
            w1.extend(part)
            l1.extend(local)
            w2 = tp.add(w2) if tp else w2
            w3.extend(sig)
        if n1_parts[r]:
            from bench._notebook import magic_wait_latencies

            logger.info("[%s] round %d/%d: notebook (N1 %d)", backend, r + 1, rounds,
                        n1_parts[r])
            n1.extend(await asyncio.to_thread(magic_wait_latencies, url, n1_parts[r], warmup))
    lines = result_lines(backend, args, w1, w1_floor, w2, w2_floor, w3)
    return lines + local_lines(backend, args, w1, l1) + notebook_lines(backend, args, w1, n1)


def local_lines(backend: str, args: argparse.Namespace, w1: Latencies,
                l1: Latencies) -> list[dict[str, Any]]:
    """L1: a one-local-activity workflow, beside W1 of the same run (it should cost less: no
    activity task, its result recorded with the activation that receives it)."""
    if not l1.samples:
        return []
    fields = l1.fields()
    w1_p50 = w1.fields()["p50_ms"] if w1.samples else None
    ratio = round(fields["p50_ms"] / w1_p50, 3) if w1_p50 else None
    return [{"workload": "L1", "backend": backend, "rounds": args.rounds,
             "loadavg_1m": round(os.getloadavg()[0], 2), "n": len(l1.samples), **fields,
             "w1_p50_ms": w1_p50, "ratio": ratio,
             "target": f"ratio <= {L1_TARGET_RATIO:g} (p50 / W1 p50)",
             "met": ratio <= L1_TARGET_RATIO if ratio is not None else None}]


def notebook_lines(backend: str, args: argparse.Namespace, w1: Latencies,
                   n1: Latencies) -> list[dict[str, Any]]:
    """N1 (beside W1 of the same run) and N2 (measured here, last)."""
    from bench import _notebook

    lines: list[dict[str, Any]] = []
    base = {"backend": backend, "loadavg_1m": round(os.getloadavg()[0], 2)}
    if n1.samples:
        fields = n1.fields()
        w1_p50 = w1.fields()["p50_ms"] if w1.samples else None
        ratio = round(fields["p50_ms"] / w1_p50, 3) if w1_p50 else None
        lines.append({"workload": "N1", **base, "n": len(n1.samples), **fields,
                      "w1_p50_ms": w1_p50, "ratio": ratio,
                      "target": f"ratio <= {_notebook.N1_TARGET_RATIO:g} (p50 / W1 p50)",
                      "met": ratio <= _notebook.N1_TARGET_RATIO if ratio is not None else None})
    if "N2" in args.workloads and args.nb2 > 0:
        logger.info("[%s] notebook (N2: %d kernel restarts)", backend, args.nb2)
        restarts = _notebook.kernel_restarts(args_url(args), args.nb2)
        fields = _notebook.restart_fields(restarts)
        lines.append({"workload": "N2", **base, "n": len(restarts.total), **fields,
                      "target": f"p50_ms <= {_notebook.N2_TARGET_P50_MS:g}",
                      "met": fields["p50_ms"] <= _notebook.N2_TARGET_P50_MS})
    return lines


def args_url(args: argparse.Namespace) -> str:
    url: str = args.url
    return url


def result_lines(backend: str, args: argparse.Namespace, w1: Latencies, w1_floor: Latencies,
                 w2: Throughput | None, w2_floor: Throughput | None,
                 w3: Latencies) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    # The machine's load when the measurements ended: a busy machine slows both sides, and
    # tells a reader how much to trust the absolute numbers.
    base = {"backend": backend, "rounds": args.rounds,
            "loadavg_1m": round(os.getloadavg()[0], 2)}
    if w1.samples and w1_floor.samples:
        engine, floor = w1.fields(), w1_floor.fields()
        ratio = engine["p50_ms"] / floor["p50_ms"]
        lines.append({"workload": "W1", **base, "n": len(w1.samples), **engine,
                      "floor_p50_ms": floor["p50_ms"], "ratio": round(ratio, 3),
                      "target": f"ratio <= {W1_TARGET_RATIO:g}", "met": ratio <= W1_TARGET_RATIO})
        lines.append({"workload": "W1_floor", **base, "n": len(w1_floor.samples), **floor,
                      "target": None, "met": None})
    if w2 is not None and w2_floor is not None:
        ratio = w2.rate / w2_floor.rate
        binding = backend == "postgres"
        lines.append({"workload": "W2", **base, "w2_rounds": args.w2_rounds, "n": w2.n,
                      **w2.fields(),
                      "floor_workflows_per_s": round(w2_floor.rate, 2), "ratio": round(ratio, 3),
                      "target": f"ratio >= {W2_TARGET_RATIO:g}"
                                + ("" if binding else " (binding on Postgres only)"),
                      "met": ratio >= W2_TARGET_RATIO if binding else None})
        lines.append({"workload": "W2_floor", **base, "n": w2_floor.n, **w2_floor.fields(),
                      "target": None, "met": None})
    if w3.samples:
        limit = W3_TARGET_P50_MS[backend]
        fields = w3.fields()
        lines.append({"workload": "W3", **base, "n": len(w3.samples), **fields,
                      "target": f"p50_ms <= {limit:g}", "met": fields["p50_ms"] <= limit})
    return lines


async def run_backend(backend: str, url: str, args: argparse.Namespace) -> int:
    args.url = url
    try:
        lines = await measure(backend, url, args)
    except Exception as err:
        logger.exception("[%s] benchmark failed", backend)
        emit({"workload": ",".join(args.workloads), "backend": backend, "n": 0,
              "error": f"{type(err).__name__}: {err}", "target": None, "met": False})
        return 1
    if "C1" in args.workloads:
        from bench._cli import cli_lines

        lines += cli_lines(backend)
    if "P1" in args.workloads and backend == "postgres":  # P1 loads a Postgres table
        from bench._pipelines import p1_line

        base = {"backend": backend, "loadavg_1m": round(os.getloadavg()[0], 2)}
        try:
            lines.append(await p1_line(url, args.p1_rows, base))
        except Exception as err:
            logger.exception("[%s] P1 failed", backend)
            lines.append({"workload": "P1", "backend": backend, "n": 0,
                          "error": f"{type(err).__name__}: {err}", "target": None,
                          "met": False})
    for line in lines:
        emit(line)
    return 0


def child_main(args: argparse.Namespace) -> int:
    backend = args.child
    StatementCounter.install()
    with tempfile.TemporaryDirectory(prefix="dbosify-bench-") as tmp:
        os.chdir(tmp)  # dbosify's embedded default lives under the cwd: keep it out of the repo
        if backend == "sqlite":
            return asyncio.run(run_backend(backend, fresh_sqlite(Path(tmp)), args))
        url, reason = fresh_postgres()
        if url is None:
            logger.warning("[postgres] skipped: Postgres at %s is unreachable (%s)", PG_SERVER,
                           reason)
            for line in skipped_lines(backend, args.workloads,
                                      f"Postgres unreachable: {reason}"):
                emit(line)
            return 0
        return asyncio.run(run_backend(backend, url, args))


# Entry point --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of W1,L1,W2,W3,N1,N2,C1,P1")
    parser.add_argument("--n1", type=int, default=200, help="W1 runs (default 200)")
    parser.add_argument("--n2", type=int, default=500, help="W2 concurrent runs (default 500)")
    parser.add_argument("--n3", type=int, default=100, help="W3 round trips (default 100)")
    parser.add_argument("--nb1", type=int, default=100, help="N1 runs (default 100)")
    parser.add_argument("--nb2", type=int, default=5, help="N2 kernel restarts (default 5)")
    parser.add_argument("--p1-rows", type=int, default=1_000_000,
                        help="P1 CSV rows (default 1,000,000)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed W1 runs before the first round (default 20; 5 later)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="W1 alternates floor/dbosify blocks this many times (default 4)")
    parser.add_argument("--w2-rounds", type=int, default=2,
                        help="W2 runs in this many of the first rounds (default 2)")
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
                   "--n2", str(args.n2), "--n3", str(args.n3), "--nb1", str(args.nb1),
                   "--nb2", str(args.nb2), "--warmup", str(args.warmup),
                   "--rounds", str(args.rounds), "--w2-rounds", str(args.w2_rounds),
                   "--p1-rows", str(args.p1_rows)]
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
