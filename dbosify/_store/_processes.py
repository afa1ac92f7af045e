"""Worker processes: their liveness leases, and which of them is dead (its runs are taken)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

import sqlalchemy as sa

from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, StoreBase, now_ms


class ProcessRows(StoreBase):
    """The processes serving a database."""

    def process_serving(self, task_queue: str, lease_ms: int, exclude: str) -> str | None:
        """A live process (heartbeat within ``lease_ms``) with a worker of ``task_queue``,
        other than ``exclude``: it can answer for runs of that queue (a closed run's query)."""
        p = t.processes
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(p.c.executor_id, p.c.task_queues).where(
                p.c.stopped.is_(False), p.c.heartbeat_ms >= now_ms() - lease_ms,
                p.c.executor_id != exclude).order_by(p.c.heartbeat_ms.desc())).all()
        for row in rows:
            if task_queue in row.task_queues.split():
                return str(row.executor_id)
        return None

    # Processes --------------------------------------------------------------------------------

    def register_process(self, executor_id: str, identity: str, task_queues: Iterable[str]) -> None:
        """Record this process as live."""
        ms = now_ms()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.processes).where(t.processes.c.executor_id == executor_id))
            conn.execute(sa.insert(t.processes).values(
                executor_id=executor_id, identity=identity, host=socket.gethostname(),
                pid=os.getpid(), task_queues=" ".join(sorted(task_queues)), started_ms=ms,
                heartbeat_ms=ms, stopped=False))

    def heartbeat_process(self, executor_id: str, task_queues: Iterable[str]) -> None:
        """Renew this process's lease."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.processes).where(t.processes.c.executor_id == executor_id)
                         .values(heartbeat_ms=now_ms(), task_queues=" ".join(sorted(task_queues))))

    def stop_process(self, executor_id: str) -> None:
        """Record a clean shutdown: this process's runs are free at once."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.processes).where(t.processes.c.executor_id == executor_id)
                         .values(stopped=True, heartbeat_ms=now_ms()))

    def dead_processes(self, lease_ms: int, identity: str, me: str) -> list[str]:
        """Executors whose runs may be taken: silent past the lease, stopped, or this identity's
        predecessors on this host whose process is gone (taken at once, DESIGN §9.3)."""
        host = socket.gethostname()
        cutoff = now_ms() - lease_ms
        with self.engine.connect() as conn:
            # Owners first: a process registers before it owns a run, so every owner read here
            # is in the process rows read next. Read the other way round, a worker registering
            # and claiming in between would look unregistered, hence dead, and lose its runs.
            owners = {r[0] for r in conn.execute(
                sa.select(t.runs.c.owner).where(t.runs.c.status == RUNNING,
                                                t.runs.c.owner.is_not(None)).distinct())}
            rows = conn.execute(sa.select(t.processes).where(t.processes.c.executor_id != me)).all()
        known = {r.executor_id for r in rows}
        dead = [r.executor_id for r in rows
                if r.stopped or r.heartbeat_ms < cutoff
                or (r.identity == identity and r.host == host and not _pid_alive(r.pid))]
        # An owner with no process row never heartbeat (crashed before registering).
        dead.extend(o for o in owners if o not in known and o != me)
        return dead




def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
