"""Worker subprocesses for the end-to-end tests, and ways to watch them.

``cluster`` starts workers of ``_app.py`` in subprocesses on the test's database, kills them
with SIGKILL, and reads the activity markers they write. Every subprocess is killed when the
test ends, before the ``database`` fixture empties the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from dbosify.client import WorkflowHandle

from ._app import DIE_ON_ENV, MARKER_ENV, RELEASE_FILE

APP = Path(__file__).with_name("_app.py")
T = TypeVar("T")


@dataclass
class WorkerProcess:
    """One worker subprocess."""

    popen: subprocess.Popen[bytes]
    identity: str
    log: Path
    killed_on: str | None = None
    """The line it was killed on (``Cluster.start(kill_on=...)``)."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Cluster:
    """Worker subprocesses on one database, and the markers their activities write."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.markers = root / "markers"
        self.markers.mkdir()
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs: list[WorkerProcess] = []
        self._engine: sa.Engine | None = None

    # Workers -------------------------------------------------------------------------------

    def start(self, task_queue: str, identity: str, *, lease_s: float | None = None,
              env: dict[str, str] | None = None, kill_on: str | None = None) -> WorkerProcess:
        """Start a worker process serving ``task_queue`` as ``identity``. ``kill_on``: the
        worker SIGKILLs itself the moment a line containing that text reaches its standard
        output (see ``_app.DIE_ON_ENV``), so nothing it would do after writing the line runs;
        the line is in ``killed_on``."""
        extra_env = env
        env = {k: v for k, v in os.environ.items()
               if k not in ("DBOSIFY_DATABASE_URL", "DBOS_SYSTEM_DATABASE_URL")}
        env[MARKER_ENV] = str(self.markers)
        env["PYTHONUNBUFFERED"] = "1"
        if lease_s is not None:
            env["DBOSIFY_LEASE_SECONDS"] = str(lease_s)
        env.update(extra_env or {})
        if kill_on is not None:
            env[DIE_ON_ENV] = kill_on
        log = self.logs / f"worker-{len(self.procs)}.log"
        args = [sys.executable, str(APP), self.url, task_queue, identity, str(self.markers)]
        if kill_on is None:
            with log.open("wb") as out:
                popen = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.logs)
            proc = WorkerProcess(popen, identity, log)
        else:
            popen = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=self.logs)
            proc = WorkerProcess(popen, identity, log)
            threading.Thread(target=_watch, args=(proc, kill_on.encode()), daemon=True).start()
        self.procs.append(proc)
        return proc

    async def ready(self, proc: WorkerProcess, timeout: float = 30.0) -> float:
        """Wait until ``proc`` serves its queue; the time (epoch seconds) it said so."""
        path = self.markers / f"ready-{proc.pid}"

        def check() -> float | None:
            if proc.popen.poll() is not None:
                raise AssertionError(f"worker {proc.identity} (pid {proc.pid}) exited with "
                                     f"{proc.popen.returncode}:\n{proc.log_tail()}")
            if path.exists() and path.read_text():
                return float(json.loads(path.read_text())["t"])
            return None

        return await self.wait_for(check, f"worker {proc.identity} to be ready", timeout)

    def kill(self, proc: WorkerProcess) -> float:
        """SIGKILL ``proc`` and reap it (a zombie's pid still looks alive); the kill time."""
        at = time.time()
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)
        return at

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGKILL)
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._engine is not None:
            self._engine.dispose()

    def release(self) -> None:
        """Let every gate activity finish."""
        (self.markers / RELEASE_FILE).write_text("go")

    def logs_text(self) -> str:
        return "\n".join(f"--- {p.identity} pid {p.pid}\n{p.log_tail()}" for p in self.procs)

    # Markers -------------------------------------------------------------------------------

    def marks(self, **match: Any) -> list[dict[str, Any]]:
        """Every marker line (all processes, by time), filtered by equal fields."""
        lines: list[dict[str, Any]] = []
        for path in self.markers.glob("act-*.log"):
            for text in path.read_text().splitlines():
                if text.strip():
                    lines.append(json.loads(text))
        lines.sort(key=lambda m: m["t"])
        return [m for m in lines if all(m.get(k) == v for k, v in match.items())]

    async def wait_for(self, check: Callable[[], T | None], what: str,
                       timeout: float = 30.0) -> T:
        """Poll ``check`` until it returns something true."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs_text()}")
            await asyncio.sleep(0.02)

    # The database --------------------------------------------------------------------------

    def recorded_events(self, run_id: str) -> int:
        """How many ``dbosify.event`` steps the run has checkpointed."""
        if self._engine is None:
            url = self.url.replace("postgresql://", "postgresql+psycopg://")
            self._engine = sa.create_engine(url)
        table = "dbos.operation_outputs" if self.url.startswith("postgresql") \
            else "operation_outputs"
        with self._engine.connect() as conn:
            return int(conn.execute(sa.text(
                f"SELECT count(*) FROM {table} WHERE workflow_uuid = :r "
                "AND function_name = 'dbosify.event' AND output IS NOT NULL"),
                {"r": run_id}).scalar_one())


async def result_of(handle: WorkflowHandle[Any, T], cluster: Cluster,
                    timeout: float = 30.0) -> T:
    """The run's result; if it does not come within ``timeout`` seconds, a failure that shows
    what the workers said."""
    try:
        return await asyncio.wait_for(handle.result(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"run {handle.id} did not complete\n{cluster.logs_text()}") from None


def _watch(proc: WorkerProcess, text: bytes) -> None:
    """Copy ``proc``'s output to its log, noting the line containing ``text``."""
    assert proc.popen.stdout is not None
    with proc.log.open("ab") as log:
        for line in iter(proc.popen.stdout.readline, b""):
            if text in line and proc.killed_on is None:
                proc.killed_on = line.decode(errors="replace").strip()
            log.write(line)
            log.flush()


@pytest.fixture
def cluster(database: str, tmp_path: Path) -> Iterator[Cluster]:
    """Worker subprocesses on the test's database, all killed at the end of the test."""
    group = Cluster(database, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
