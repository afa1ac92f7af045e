"""One process's part in dbosify: its database, its DBOS instance, its workers and runs.

DBOS is one object per process (DESIGN §10), so dbosify is too: :func:`process_for` binds the
process to one database; clients and workers share it. The process plays Temporal's server and
Core for the runs it owns (DESIGN §9.3, §9.5): it starts them as DBOS workflows, drives them,
claims runs no worker has yet, takes over the runs of dead processes, and runs activity attempts
offered by other processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import os
import socket
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from dbos import DBOS, DBOSClient, DBOSConfig, SetWorkflowID
from temporalio.api.common.v1 import Payloads
from temporalio.bridge.proto.activity_task import ActivityCancelReason
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

from dbosify._exceptions import ConfigurationError
from dbosify._runtime import _run_state as rs
from dbosify._runtime._activities import ActivityRunner
from dbosify._runtime._dispatch import dispatch_own_queue
from dbosify._runtime._driver import RunDriver
from dbosify._runtime._instance import WorkflowRegistration
from dbosify._runtime._messaging import ProcessMessaging
from dbosify._runtime._scheduler import run_scheduler
from dbosify._store._database import DatabaseURL, is_transient
from dbosify._store._store import Store

if TYPE_CHECKING:
    from dbosify._runtime._closing import Closer

logger = logging.getLogger("dbosify")
T = TypeVar("T")

APPLICATION_VERSION = "dbosify-1"
"""DBOS application version of every dbosify process: the engine's, never a hash of user code,
so an edited notebook cell does not strand runs (DESIGN §9.3). Fixed for good: DBOS recovers only
workflows of its own version, and every dbosify reads the records of earlier formats
(``RECORD_FORMAT`` is stored in each record instead), so an upgrade strands no run."""

DEFAULT_LEASE_S = 10.0
DB_RETRY_SECONDS = 600.0
"""How long a database call of a run is retried through transient errors before it fails (and
the run's DBOS workflow with it, which the maintenance pass then puts back to work)."""
_DB_RETRY_FIRST_S = 0.05
_DB_RETRY_MAX_S = 2.0
_ERRORED_CHECK_S = 5.0
_RUN_FUNCTION = "dbosify.run"


@DBOS.workflow(name=_RUN_FUNCTION, max_recovery_attempts=1_000_000)
async def _dbos_run(run_id: str, first: str | None = None) -> dict[str, Any] | None:
    """The DBOS workflow of every run: drive it in the process that owns it. ``first``: the
    completion of the run's first activation, recorded by DBOS with the workflow itself (runs
    started by dbosify before record format 2 have none)."""
    process = _current
    if process is None:
        raise ConfigurationError("dbosify run dispatched with no dbosify process active")
    return await process.execute_run(run_id, first)


_current: Process | None = None
_current_lock = threading.Lock()


def process_for(db: DatabaseURL) -> Process:
    """The process's binding to ``db``, created on first use.

    One process talks to one database at a time (DESIGN §9.5): asking for another while
    workers of the first run is an error naming both; with none running, the process switches.
    """
    global _current
    with _current_lock:
        if _current is not None and _current.db.url == db.url and not _current.closed:
            return _current
        if _current is not None and not _current.closed:
            if _current.workers:
                raise ConfigurationError(
                    f"this process already uses the database {_current.db.redacted} (with "
                    f"running workers); it cannot also use {db.redacted}. Shut the workers "
                    "down first, or use another process.")
            _current.close()
        _current = Process(db)
        return _current


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that Python 3.11's ``asyncio.wait_for`` dropped because the
    awaited event was set in the same loop iteration (bpo-42130; fixed in 3.12)."""
    task = asyncio.current_task()
    if task is not None and getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError


def current_process() -> Process | None:
    """The live binding, if any."""
    return _current if _current is not None and not _current.closed else None


class Process(ProcessMessaging):
    """dbosify's state in this process for one database."""

    def __init__(self, db: DatabaseURL) -> None:
        self.db = db
        self.store = Store(db)
        self.closed = False
        self.executor_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Stable across restarts of the same program, so a restarted worker takes its dead
        # predecessor's runs at once (DESIGN §9.3); Worker(identity=...) overrides it.
        self.identity = f"{socket.gethostname()}:{os.path.abspath(sys.argv[0] or 'python')}"
        self.lease_s = float(os.environ.get("DBOSIFY_LEASE_SECONDS", DEFAULT_LEASE_S))
        self.poll_interval = 0.1 if db.dialect == "sqlite" else 1.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.workers: list[Any] = []
        self.drivers: dict[str, RunDriver] = {}
        self.fresh_runs: set[str] = set()
        self._early_wakes: set[str] = set()
        self._created_here: set[str] = set()
        self._answering: set[int] = set()
        self._answer_waiters: dict[int, asyncio.Future[bytes]] = {}
        self._queries_waiting = False
        # Attempts of other processes' runs running here: task id -> (runner, token).
        self._remote_attempts: dict[int, tuple[ActivityRunner, bytes]] = {}
        self._cancels_waiting = False
        self.activation_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="dbosify-workflow")
        # Few threads: the database calls are short, and more threads only contend for the GIL.
        self.db_executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="dbosify-db")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._close_waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self.closing_here: set[str] = set()
        self._recent_closes: OrderedDict[str, bytes] = OrderedDict()
        self._update_waiters: dict[tuple[str, str], list[asyncio.Future[bytes]]] = {}
        self._dbos_launched = False
        self._maintain_task: asyncio.Task[None] | None = None
        self._wake_maintain = asyncio.Event()
        self._listener: threading.Thread | None = None
        self._listener_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._dbos_client: DBOSClient | None = None
        self._heartbeat_stop = threading.Event()
        self._inbox_cursor = 0
        self._closer: Closer | None = None
        self.queue_name = f"dbosify-{self.executor_id}"
        self._own_queue: concurrent.futures.Future[Any] | None = None
        """This process's DBOS queue (a ``dbos.Queue``) being registered, once DBOS is
        launched."""

    # Small helpers ----------------------------------------------------------------------------

    async def db_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call off the event loop, retrying a transient error (the
        database restarting, a dropped connection, a serialization failure) with backoff until
        it passes, for up to ``DB_RETRY_SECONDS``: a run's statements ride out a restart, as
        DBOS's own do. Every call is a whole transaction, so trying it again is safe."""
        loop = asyncio.get_running_loop()
        delay_s = _DB_RETRY_FIRST_S
        give_up: float | None = None
        while True:
            try:
                return await loop.run_in_executor(self.db_executor, lambda: fn(*args))
            except Exception as err:
                if self.closed or not is_transient(err):
                    raise
                now = loop.time()
                give_up = give_up if give_up is not None else now + DB_RETRY_SECONDS
                if now >= give_up:
                    raise
                logger.warning("database call %s failed (%s); retrying in %.2f s",
                               getattr(fn, "__name__", fn), str(err).splitlines()[0], delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, _DB_RETRY_MAX_S)

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> None:
        """Run a background coroutine on the engine loop, logging (not losing) its failure."""
        loop = self.loop or asyncio.get_event_loop()
        task = asyncio.ensure_future(coro, loop=loop)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("dbosify background task failed", exc_info=t.exception())

        task.add_done_callback(done)

    def dbos_client(self) -> DBOSClient:
        """A DBOS client for reading runs' records (works with or without a launched DBOS);
        one per process, released by :meth:`close`."""
        if self._dbos_client is None:
            self._dbos_client = DBOSClient(system_database_url=self.db.url, lazy=True)
        return self._dbos_client

    # Workers ----------------------------------------------------------------------------------

    def registration(self, task_queue: str, workflow_type: str,
                     build_id: str | None = None) -> WorkflowRegistration | None:
        """The definition a worker of ``task_queue`` has for ``workflow_type``: a running
        worker's first (the newest), else a stopping one's (its runs still record what finished
        during its grace period). A run pinned to ``build_id`` gets only a worker with that
        build id (Temporal's worker versioning, DESIGN §6)."""
        for worker in sorted(reversed(self.workers), key=lambda w: bool(w.stopping)):
            if build_id is not None and getattr(worker, "build_id", None) != build_id:
                continue
            if worker.task_queue == task_queue:
                reg = worker.workflow_registrations.get(workflow_type) or \
                    worker.workflow_registrations.get("")
                if reg is not None:
                    return reg  # type: ignore[no-any-return]
        return None

    def start_build_id(self, task_queue: str, workflow_type: str) -> str | None:
        """The build id a new run of ``workflow_type`` is pinned to: that of the newest running
        worker here that has the type (None: unversioned, or no such worker)."""
        for worker in reversed(self.workers):
            if worker.task_queue == task_queue and not worker.stopping and (
                    workflow_type in worker.workflow_registrations
                    or "" in worker.workflow_registrations):
                return getattr(worker, "build_id", None)
        return None

    def activity_runner(self, task_queue: str, build_id: str | None = None,
                        activity_type: str | None = None) -> ActivityRunner | None:
        """The activity runner of a running worker of ``task_queue`` in this process: the one
        with ``build_id`` (the run's version: Temporal pins activities on the run's own task
        queue to it) if it has the activity, else the newest that has it, else the newest."""
        runners = [(getattr(w, "build_id", None), w.activity_runner) for w in reversed(self.workers)
                   if w.task_queue == task_queue and not w.stopping
                   and w.activity_runner is not None]
        if activity_type is not None:
            serving = [(b, r) for b, r in runners if r.serves(activity_type)]
            pinned = [r for b, r in serving if build_id is not None and b == build_id]
            if pinned or serving:
                return (pinned or [r for _, r in serving])[0]  # type: ignore[no-any-return]
        elif build_id is not None:
            pinned = [r for b, r in runners if b == build_id]
            if pinned:
                return pinned[0]  # type: ignore[no-any-return]
        return runners[0][1] if runners else None

    def served_builds(self, activities: bool = False) -> list[tuple[str, str]]:
        """(task queue, build id) of the running versioned workers here: the pinned runs (or,
        with ``activities``, pinned activity attempts) this process may take."""
        return sorted({(w.task_queue, w.build_id) for w in self.workers
                       if not w.stopping and getattr(w, "build_id", None)
                       and (w.activity_runner if activities else w.workflow_registrations)})

    def serves_workflows(self, task_queue: str) -> bool:
        """Whether a running worker here takes workflow runs of ``task_queue``."""
        if self.loop is not None and self.loop.is_closed():
            self._forget_dead_loop()
        return any(w.task_queue == task_queue and not w.stopping and w.workflow_registrations
                   for w in self.workers)

    def workflow_queues(self) -> set[str]:
        return {w.task_queue for w in self.workers if not w.stopping and w.workflow_registrations}

    def activity_queues(self) -> set[str]:
        return {w.task_queue for w in self.workers if not w.stopping and w.activity_runner}

    async def add_worker(self, worker: Any) -> None:
        """Start serving a worker's task queue in this process."""
        loop = asyncio.get_running_loop()
        self._forget_dead_loop()
        if self.loop is not None and self.loop is not loop and self.workers:
            raise ConfigurationError(
                "all dbosify workers of a process must run on one event loop; this worker "
                "runs on another loop than the workers already running")
        self.loop = loop
        if getattr(worker, "identity", None):
            self.identity = worker.identity
        await self._ensure_dbos()
        # Registered before the worker serves anything: this process owns no run of it until
        # its row exists, which is how peers tell a new process from a dead one
        # (Store.dead_processes).
        await self.db_call(self.store.register_process, self.executor_id, self.identity,
                           self.workflow_queues() | self.activity_queues() | {worker.task_queue})
        self.workers.append(worker)
        # A new version may be the one a dead predecessor's pinned runs wait for: look for
        # them at once rather than at the next periodic takeover.
        self._takeover_due = True
        if self._maintain_task is None or self._maintain_task.done():
            self._wake_maintain = asyncio.Event()
            self._maintain_task = loop.create_task(self._maintain())
        self.ensure_listener()
        self._start_heartbeat()
        self._wake_maintain.set()

    def _forget_dead_loop(self) -> None:
        """Forget the workers of an event loop that has closed, and give their runs back.

        Such workers can never run again: a test's loop ended inside ``async with Worker``
        (pytest-asyncio gives each test a loop of its own; a timeout kills a test mid-way). Their
        runs are released, so a worker on the new loop takes them (their DBOS workflows resume
        there), and nothing of the dead loop is awaited again.
        """
        dead = self.loop
        if dead is None or not dead.is_closed():
            return
        if self.workers:
            logger.warning("dbosify: the event loop of %d running worker(s) has closed; their "
                           "runs are given back to the workers of the new loop",
                           len(self.workers))
        for worker in self.workers:
            worker.stopping = True
        self.workers.clear()
        self.drivers.clear()
        self.fresh_runs.clear()
        self._tasks.clear()
        # Futures of clients on the dead loop; those of clients on live loops stay.
        self._close_waiters = {k: kept for k, v in self._close_waiters.items()
                               if (kept := [f for f in v if f.get_loop() is not dead])}
        self._update_waiters = {k: kept for k, v in self._update_waiters.items()
                                if (kept := [f for f in v if f.get_loop() is not dead])}
        for task_id in [k for k, f in self._answer_waiters.items() if f.get_loop() is dead]:
            del self._answer_waiters[task_id]
        self._maintain_task = None
        self._wake_maintain = asyncio.Event()
        self.loop = None
        # Every run this process holds was driven on the dead loop (including one whose driver
        # was cancelled before its worker could give it back). A blocking call, once: the new
        # loop's workers must find these runs unowned.
        self.store.release_owned_runs(self.executor_id)

    async def remove_worker(self, worker: Any) -> None:
        """Stop a worker's runs here and give them back, so another worker takes them."""
        queue = worker.task_queue
        if not self.serves_workflows(queue) or all(w is worker for w in self.workers
                                                   if w.task_queue == queue):
            drivers = [d for d in self.drivers.values()
                       if d.row is not None and d.row.task_queue == queue]
            for driver in drivers:
                task = driver.current_task
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(d.current_task for d in drivers if d.current_task),
                                 return_exceptions=True)
            await self.db_call(self.store.release_runs, [d.run_id for d in drivers],
                               self.executor_id)
        if worker in self.workers:
            self.workers.remove(worker)
        if not self.workers:
            if self._maintain_task is not None:
                self._maintain_task.cancel()
                await asyncio.gather(self._maintain_task, return_exceptions=True)
                self._maintain_task = None
            # On the loop: stop the threads without waiting for them.
            self._stop_listener(join=False)
            self._stop_heartbeat(join=False)
            await self.db_call(self.store.stop_process, self.executor_id)

    # DBOS -------------------------------------------------------------------------------------

    async def _ensure_dbos(self) -> None:
        if self._dbos_launched:
            return
        config: DBOSConfig = {
            "name": "dbosify",
            "system_database_url": self.db.url,
            # Unique per process: DBOS's shared default "local" lets two live processes take
            # each other's in-flight runs at launch (DESIGN §10).
            "executor_id": self.executor_id,
            "application_version": APPLICATION_VERSION,
            "log_level": os.environ.get("DBOSIFY_DBOS_LOG_LEVEL", "WARNING"),
            # No ping before each of DBOS's statements (about ten per run, a tenth of a run's
            # CPU in bench W2): DBOS retries a statement that finds its connection gone
            # (its db_retry), and SQLAlchemy then replaces the whole pool.
            "db_engine_kwargs": {"pool_pre_ping": False},
        }

        def launch() -> None:
            DBOS(config=config)
            # Only this process's own queue: runs it takes over are resumed onto it, so no
            # other process (a client, or a worker of other task queues) dequeues them.
            DBOS.listen_queues([self.queue_name])
            DBOS.launch()

        # Launched off the loop: DBOS adopts a running loop it is launched on (DESIGN §10).
        await asyncio.get_running_loop().run_in_executor(None, launch)
        self._dbos_launched = True
        # Registered in the background: only a takeover waits for this queue (dispatch_resumed
        # awaits it), and a worker's start, a restarted notebook's %load_ext, need not wait for
        # its few statements (about 0.05-0.1 s on Postgres).
        self._own_queue = self.db_executor.submit(self._register_own_queue)

    def _register_own_queue(self) -> Any:
        # Only taken-over runs come through this queue: a slow poll keeps its idle cost low
        # (DBOS polls each queue, DESIGN §10); dispatch_resumed starts them without the poll.
        return DBOS.register_queue(self.queue_name, polling_interval_sec=1.0)

    async def execute_run(self, run_id: str, first: str | None = None) -> dict[str, Any] | None:
        """The body of a run's DBOS workflow: drive it on the engine loop."""
        loop = asyncio.get_running_loop()
        if self.loop is not None and loop is not self.loop and self.loop.is_running():
            # Dispatched by DBOS on its own loop (a takeover): hop to the workers' loop, which
            # carries the DBOS context along (run_coroutine_threadsafe copies contextvars).
            future = asyncio.run_coroutine_threadsafe(self._drive(run_id, first), self.loop)
            return await asyncio.wrap_future(future)
        return await self._drive(run_id, first)

    async def _drive(self, run_id: str, first: str | None) -> dict[str, Any] | None:
        driver = self.drivers.get(run_id)
        if driver is None or not driver.prestarted or driver.current_task is not None:
            recovering = run_id not in self.fresh_runs
            driver = RunDriver(self, run_id, recovering=recovering)
            self.drivers[run_id] = driver
        self.fresh_runs.discard(run_id)
        try:
            return await driver.run(first)
        except Exception:
            # DBOS now marks the workflow ERROR; the run is still RUNNING for dbosify, so the
            # maintenance pass puts it back to work (requeue_errored_workflow), from its records.
            logger.exception("run %s failed in this process; it will be resumed", run_id)
            self._errored_seen = True
            self.wake_dispatch()
            raise
        finally:
            if self.drivers.get(run_id) is driver:
                del self.drivers[run_id]

    async def start_run(self, run_id: str, row: Any = None) -> None:
        """Start a run this process has just created or claimed and owns (no DBOS workflow
        exists yet); ``row`` is its freshly written runs row, saving a read.

        The first activation runs first (:meth:`RunDriver.prestart`): its completion goes into
        the DBOS workflow's input, so DBOS records it with the workflow in one commit, before
        anything it asks for is carried out."""
        await self._ensure_dbos()
        self.fresh_runs.add(run_id)
        loop = asyncio.get_running_loop()
        first: str | None = None
        if run_id not in self.drivers:
            if row is None:
                row = await self.db_call(self.store.get_run_by_id, run_id)
            if row is not None and row.status == rs.RUNNING:
                driver = RunDriver(self, run_id, recovering=False, row=row)
                self.drivers[run_id] = driver
                try:
                    first = await loop.create_task(driver.prestart(),
                                                   context=contextvars.Context())
                except BaseException:
                    self.drivers.pop(run_id, None)
                    raise

        async def start() -> None:
            with SetWorkflowID(run_id):
                await DBOS.start_workflow_async(_dbos_run, run_id, first)

        # In a fresh context: called from a run's DBOS workflow (continue-as-new, children),
        # DBOS would make the new run a child workflow of that one, which fails once the
        # closing run's DBOS workflow has ended ("no longer owned by this execution").
        try:
            await loop.create_task(start(), context=contextvars.Context())
        except BaseException:
            self.drivers.pop(run_id, None)
            raise

    async def adopt_run(self, run_id: str) -> None:
        """Run a run this process has just claimed: start it, or resume its DBOS workflow."""
        if run_id in self.drivers:
            return
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            # No DBOS workflow: the run has had no workflow task yet. Temporal assigns a build
            # id at the first one, so an unversioned run (started while no versioned worker
            # existed) is pinned to the version of the worker here that will drive it.
            row = await self.db_call(self.store.get_run_by_id, run_id)
            if row is not None and row.build_id is None:
                build_id = self.start_build_id(row.task_queue, row.workflow_type)
                if build_id is not None:
                    row = await self.db_call(self.store.pin_run_build, run_id, build_id,
                                             self.executor_id)
                    if row is None:
                        return  # No longer this process's (terminated, given back).
            await self.start_run(run_id, row)
        elif status.status in ("PENDING", "ENQUEUED", "CANCELLED",
                               "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            # The run is RUNNING for dbosify: whatever stopped its DBOS workflow, it goes on.
            await DBOS.resume_workflow_async(run_id, queue_name=self.queue_name)
            await self.dispatch_resumed()
        elif status.status == "ERROR":
            await self._requeue_errored(run_id)
        else:
            logger.warning("run %s is RUNNING for dbosify but its DBOS workflow is %s",
                           run_id, status.status)

    async def _requeue_errored(self, run_id: str) -> None:
        # The DBOS workflow ended in ERROR while the run is still RUNNING: never leave it so.
        if await self.db_call(self.store.requeue_errored_workflow, run_id, self.queue_name):
            logger.warning("run %s: its DBOS workflow had failed; resuming it from its records",
                           run_id)
            # Left to DBOS's queue poll, not dispatch_resumed: a body that fails again at once
            # is then retried about once a second, not in a tight loop.

    async def dispatch_resumed(self) -> None:
        """Start the DBOS workflows just resumed onto this process's own queue at once, rather
        than at the queue's next poll (up to 2 s after launch): a restarted notebook takes its
        predecessor's runs at once (DESIGN §9.3). DBOS's queue claim stays the gate, so this
        races its queue thread safely; should it fail, that thread still starts them."""
        registering = self._own_queue
        if registering is None:
            return
        try:
            try:
                queue = await asyncio.wrap_future(registering)
            except Exception:
                # Registered again for the next takeover (the queue thread needs it too).
                self._own_queue = self.db_executor.submit(self._register_own_queue)
                raise
            await self.db_call(dispatch_own_queue, queue, self.executor_id, APPLICATION_VERSION)
        except Exception:
            logger.warning("dbosify could not start resumed runs at once; DBOS's queue will",
                           exc_info=True)

    async def _resume_errored_runs(self) -> None:
        """Resume this process's runs whose DBOS workflow failed (checked now and then, and at
        once after a run's body raised)."""
        for run_id in await self.db_call(self.store.errored_runs, self.executor_id):
            if run_id not in self.drivers:
                await self._requeue_errored(run_id)

    def launch_local(self, run_id: str, row: Any = None) -> None:
        """Start a new run from any thread or loop (the client may not be on the engine loop)."""
        loop = self.loop
        if loop is None:
            return
        self.fresh_runs.add(run_id)
        coro = self.start_run(run_id, row)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.spawn(coro)
        else:
            asyncio.run_coroutine_threadsafe(coro, loop)

    # Runs closing and waiting -----------------------------------------------------------------

    def closer(self) -> Closer:
        if self._closer is None:
            from dbosify._runtime._closing import Closer
            self._closer = Closer(self)
        return self._closer

    async def close_run(self, driver: RunDriver, completion: WorkflowActivationCompletion,
                        command: WorkflowCommand, at_ms: int) -> None:
        """Record a run's close (and start its continuation), then wake whoever waits on it."""
        await self.closer().close_from_command(driver, completion, command, at_ms)

    def expect_run(self, run_id: str) -> None:
        """This process is about to create ``run_id`` (call before writing it): wake-ups that
        arrive before its driver exists are remembered."""
        self._created_here.add(run_id)

    def forget_run(self, run_id: str) -> None:
        """The expected run was not created (the start resolved to another run)."""
        self._created_here.discard(run_id)

    def inbox_known_empty(self, run_id: str) -> bool:
        """Whether a new driver may skip its first inbox read: the run was created here and no
        event has been written for it since."""
        created = run_id in self._created_here
        self._created_here.discard(run_id)
        woken = run_id in self._early_wakes
        self._early_wakes.discard(run_id)
        return created and not woken

    def wake_run(self, run_id: str) -> None:
        """An event was written for a run: wake its driver if it is here."""
        driver = self.drivers.get(run_id)
        loop = self.loop
        if driver is None or loop is None:
            if run_id in self._created_here:
                self._early_wakes.add(run_id)
            return

        def wake() -> None:
            driver.message_part.inbox_dirty = True
            driver.wake.set()

        loop.call_soon_threadsafe(wake)

    def wake_dispatch(self) -> None:
        """New work may be waiting for this process's workers (runs, activity attempts)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_maintain.set)

    # Background maintenance -------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        self._heartbeat_stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, args=(self._heartbeat_stop,),
                                           name="dbosify-heartbeat", daemon=True)
        self._heartbeat.start()

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        # A thread of its own: a busy event loop (many runs to adopt, a slow cell in a
        # notebook) must not let the lease lapse, or live peers would take this process's runs.
        queues: set[str] = set()
        while not stop.wait(self.lease_s / 4):
            try:
                queues = set(self.workflow_queues() | self.activity_queues())
            except RuntimeError:  # The worker list changed while being read; keep the last.
                pass
            try:
                self.store.heartbeat_process(self.executor_id, queues)
            except Exception:
                logger.warning("dbosify heartbeat failed; retrying", exc_info=True)

    def _stop_heartbeat(self, join: bool = True) -> None:
        if self._heartbeat is not None:
            self._heartbeat_stop.set()
            if join:
                self._heartbeat.join(timeout=5)
            self._heartbeat = None

    async def _maintain(self) -> None:
        """Claim runs and activity attempts, take over runs of dead processes."""
        last_takeover = 0.0
        last_errored = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                run_scheduler(self)  # Schedules fire wherever a worker runs.
                now = loop.time()
                queues = self.workflow_queues()
                if queues and (self._errored_seen or now - last_errored >= _ERRORED_CHECK_S):
                    self._errored_seen = False
                    last_errored = now
                    await self._resume_errored_runs()
                if now - last_takeover >= min(self.lease_s / 4, 2.0) or self._takeover_due:
                    last_takeover = now
                    self._takeover_due = False
                    await self._take_over(queues)
                for run_id in await self.db_call(self.store.claim_unowned_runs, queues,
                                                 self.executor_id, 8, self.served_builds()):
                    await self.adopt_run(run_id)
                await self._claim_activity_tasks()
                if self.db.dialect == "sqlite" or self._queries_waiting:
                    self._queries_waiting = False
                    await self._answer_queries()
                if self.db.dialect == "sqlite":
                    await self._poll_inbox()
                if self._remote_attempts and (self.db.dialect == "sqlite"
                                              or self._cancels_waiting):
                    self._cancels_waiting = False
                    await self._stop_cancelled_attempts()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dbosify worker maintenance failed; retrying")
            self._wake_maintain.clear()
            try:
                await asyncio.wait_for(self._wake_maintain.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            _raise_if_cancelling()

    async def _take_over(self, queues: set[str]) -> None:
        dead = await self.db_call(self.store.dead_processes, int(self.lease_s * 1000),
                                  self.identity, self.executor_id)
        if not dead:
            return
        for run_id in await self.db_call(self.store.take_over_runs, queues, dead,
                                         self.executor_id, self.served_builds()):
            logger.info("taking over run %s from a process that stopped", run_id)
            await self.adopt_run(run_id)
        self._dead_owners = dead

    _dead_owners: list[str] = []
    _errored_seen = False
    _takeover_due = False

    async def _claim_activity_tasks(self) -> None:
        queues = self.activity_queues()
        if not queues:
            return
        free = sum(max(0, w.max_concurrent_activities - w.activity_runner.running)
                   for w in self.workers if w.activity_runner is not None and not w.stopping)
        rows = await self.db_call(self.store.claim_activity_tasks, queues, self.executor_id,
                                  min(free, 8), self._dead_owners,
                                  self.served_builds(activities=True))
        for row in rows:
            runner = self.activity_runner(row.task_queue, row.build_id)
            if runner is None:
                continue
            self.spawn(self._run_remote_attempt(runner, row))

    async def _run_remote_attempt(self, runner: ActivityRunner, row: Any) -> None:
        token, start = rs.decode_remote_task(row.payload)

        def heartbeat(details: Payloads) -> None:
            # To the database, as Core sends heartbeats to the server: the details outlive
            # this process, and the answer tells whether the run asks the attempt to stop.
            self.spawn(self._remote_heartbeat(runner, token, row, details.SerializeToString()))

        self._remote_attempts[row.id] = (runner, token)
        try:
            # Claimed again after its first worker died: go on from that worker's heartbeat.
            saved = await self.db_call(self.store.load_heartbeat, row.run_id, row.seq)
            if saved:
                del start.heartbeat_details[:]
                start.heartbeat_details.extend(Payloads.FromString(saved).payloads)
            outcome = await runner.execute(token, start, heartbeat)
        finally:
            self._remote_attempts.pop(row.id, None)
        outcome.identity = self.identity
        await self.db_call(self.store.finish_activity_task, row.id, row.run_id,
                           rs.encode_remote_outcome(token, outcome), token.decode())
        self.wake_run(row.run_id)

    async def _remote_heartbeat(self, runner: ActivityRunner, token: bytes, row: Any,
                                details: bytes) -> None:
        reason = await self.db_call(self.store.activity_heartbeat, row.id, row.run_id, row.seq,
                                    details)
        if reason is not None:
            runner.cancel(token, ActivityCancelReason.ValueType(reason))

    async def _stop_cancelled_attempts(self) -> None:
        """Cancel the attempts run here whose runs asked for it (or closed)."""
        stop = await self.db_call(self.store.cancelled_activity_tasks,
                                  list(self._remote_attempts))
        for task_id, reason in stop.items():
            attempt = self._remote_attempts.get(task_id)
            if attempt is not None:
                attempt[0].cancel(attempt[1], ActivityCancelReason.ValueType(reason))

    async def _poll_inbox(self) -> None:
        # SQLite has no push: a cheap look for events written by other processes.
        cursor, runs = await self.db_call(self.store.runs_with_inbox_after, self._inbox_cursor)
        self._inbox_cursor = cursor
        for run_id in runs:
            self.wake_run(run_id)


    # Shutdown ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database and DBOS (no workers may be running)."""
        if self.closed:
            return
        self.closed = True
        self._stop_listener()
        self._stop_heartbeat()
        if self._dbos_client is not None:
            self._dbos_client.destroy()
            self._dbos_client = None
        if self._dbos_launched:
            DBOS.destroy(destroy_registry=False)
            self._dbos_launched = False
            if self.loop is not None and not self.loop.is_closed():
                # DBOS's async APIs set the loop's default executor to DBOS's own pool, which
                # destroy() shuts down; without a new one asyncio.to_thread would fail.
                self.loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
        self.activation_executor.shutdown(wait=False)
        self.db_executor.shutdown(wait=False)
        self.store.close()


def close_current() -> None:
    """Close this process's binding (tests, and switching databases)."""
    global _current
    with _current_lock:
        if _current is not None:
            _current.close()
            _current = None
