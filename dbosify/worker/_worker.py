"""dbosify's Worker: temporalio's Worker signature, run on the database (DESIGN §9.1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import temporalio.activity
import temporalio.client
import temporalio.converter
import temporalio.workflow
from temporalio.worker import (
    Interceptor,
    SharedStateManager,
    UnsandboxedWorkflowRunner,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from dbosify._cells import declared_activities
from dbosify._runtime._activities import ActivityRunner
from dbosify._runtime._instance import DEFAULT_DEADLOCK_TIMEOUT, WorkflowRegistration
from dbosify._runtime._process import Process

WorkerTarget = temporalio.client.Client | str | Mapping[str, Any] | None
"""What a :class:`Worker` runs on: a client, a database URL, a DBOS config dict (its
``system_database_url``), or None for the configured database."""

_UNSUPPORTED = {
    "nexus_service_handlers": "Nexus services are not supported by dbosify",
    "tuner": "slot tuners are not supported; use max_concurrent_activities and "
             "max_concurrent_workflow_tasks",
    "deployment_config": "worker deployments are a Temporal Cloud/server feature",
}


class Worker:
    """Runs workflows and activities of one task queue, with temporalio's ``Worker`` arguments.

    Use it as temporalio's: ``async with Worker(client, task_queue=..., workflows=[...],
    activities=[...]):`` or ``await worker.run()`` then ``await worker.shutdown()``. Workflow code
    runs in temporalio's own workflow instance; the engine records every event in the database,
    so runs survive a crash of this process and continue on any worker of the task queue.

    ``build_id`` pins runs to this worker's version, as Temporal's build-id versioning does:
    a run started while this is the newest worker of its type records the build id (shown by
    ``describe()`` and in the history) and is only ever driven by a worker with the same build
    id, in this process or another, so changed code never breaks a run in flight.

    It runs on the event loop it is started on, in the background (in Jupyter, the kernel's),
    and never blocks that loop. Several workers (task queues) may run in one process; a worker
    can be shut down and a new one started with changed definitions without losing runs.

    Its first argument is a client (as in temporalio), or, as in the earlier dbosify, a database
    URL, a DBOS config dict (``{"system_database_url": ...}``) or None for the configured
    database (``DBOSIFY_DATABASE_URL``, ``DBOS_SYSTEM_DATABASE_URL``, else the embedded SQLite
    file); the worker then connects when it starts (``data_converter=`` and ``namespace=`` may
    be given for that client). Sync activities run in a thread pool of the worker's own unless
    ``activity_executor`` is given.

    Example::

        async with Worker(client, task_queue="q", workflows=[Greet], activities=[say_hi]):
            print(await client.execute_workflow(Greet.run, "Ann", id="g1", task_queue="q"))
    """

    def __init__(
        self,
        client: WorkerTarget = None,
        *,
        task_queue: str,
        activities: Sequence[Callable[..., Any]] = (),
        workflows: Sequence[type] = (),
        activity_executor: concurrent.futures.Executor | None = None,
        workflow_runner: WorkflowRunner | None = None,
        unsandboxed_workflow_runner: WorkflowRunner | None = None,
        interceptors: Sequence[Interceptor] = (),
        identity: str | None = None,
        max_concurrent_workflow_tasks: int | None = None,
        max_concurrent_activities: int | None = None,
        graceful_shutdown_timeout: timedelta = timedelta(),
        workflow_failure_exception_types: Sequence[type[BaseException]] = (),
        debug_mode: bool = False,
        build_id: str | None = None,
        use_worker_versioning: bool = False,
        shared_state_manager: SharedStateManager | None = None,
        **options: Any,
    ) -> None:
        from dbosify._service._service import DatabaseService

        self._client: temporalio.client.Client | None = None
        self._owns_client = False
        self._database: str | None = None
        if isinstance(client, temporalio.client.Client):
            service = client.service_client
            if not isinstance(service, DatabaseService):
                raise TypeError("dbosify's Worker needs a client from dbosify.client.Client."
                                "connect (a temporalio Client talks to a Temporal server)")
            self._client = client
            self.process: Process = service.process
            self._data_converter = client.data_converter
            self._namespace = client.namespace
            client_interceptors = client.config()["interceptors"]
        else:
            self._database = _database_of(client)
            self._data_converter = options.pop(
                "data_converter", temporalio.converter.DataConverter.default)
            self._namespace = options.pop("namespace", "default")
            client_interceptors = []
        for name in options:
            if name in _UNSUPPORTED:
                raise ValueError(f"Worker({name}=...): {_UNSUPPORTED[name]}")
        if not task_queue:
            raise ValueError("Worker needs a task_queue")
        if not activities and not workflows:
            raise ValueError("Worker needs at least one workflow or activity")
        self.task_queue = task_queue
        self.identity = identity
        if use_worker_versioning and not build_id:
            raise ValueError("build_id must be specified when use_worker_versioning is True")
        # Worker versioning (DESIGN §6): a run started while this worker is the newest of its
        # type is pinned to this build id, and only a worker with it drives the run (and runs
        # its activities on this task queue). None: unversioned, as before.
        self.build_id = build_id
        self.max_concurrent_activities = max_concurrent_activities or 100
        self.max_concurrent_workflow_tasks = max_concurrent_workflow_tasks or 100
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.stopping = False
        # Client interceptors that are also worker interceptors apply to the worker too, as in
        # temporalio.
        self._interceptors: list[Interceptor] = [
            i for i in client_interceptors if isinstance(i, Interceptor)
        ] + list(interceptors)
        self._activities = list(activities)
        # A pipeline template's own activities come with its subclass: nothing to register.
        for cls in workflows:
            self._activities += [fn for fn in declared_activities(cls)
                                 if fn not in self._activities]
        self._activity_executor = activity_executor
        self._shared_state_manager = shared_state_manager
        # A pool of the worker's own for sync activities, made when it starts and shut down
        # with it (temporalio insists on an executor; a notebook user should not have to).
        self._own_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._needs_executor = activity_executor is None and \
            self._sync_activities(self._activities)
        if self._sync_activities(activities) and activity_executor is not None and \
                not isinstance(activity_executor, concurrent.futures.ThreadPoolExecutor) and \
                shared_state_manager is None:
            raise ValueError(
                "sync activities in an executor that is not a ThreadPoolExecutor need "
                "shared_state_manager=SharedStateManager.create_from_multiprocessing("
                "multiprocessing.Manager()), as in temporalio")
        self.activity_runner: ActivityRunner | None = None
        runner = workflow_runner or UnsandboxedWorkflowRunner()
        if isinstance(runner, SandboxedWorkflowRunner) and \
                "dbosify" not in runner.restrictions.passthrough_modules:
            # As temporalio passes itself through its sandbox, so does dbosify: a workflow
            # module that imports dbosify.client (or an alias of a temporalio module) must not
            # re-import the engine and DBOS inside the sandbox.
            runner = dataclasses.replace(
                runner, restrictions=runner.restrictions.with_passthrough_modules("dbosify"))
        self.workflow_registrations = self._register_workflows(
            workflows, runner,
            unsandboxed_workflow_runner or UnsandboxedWorkflowRunner(),
            workflow_failure_exception_types, None if debug_mode else DEFAULT_DEADLOCK_TIMEOUT)
        self._shutdown_requested: asyncio.Event | None = None
        self._started: asyncio.Event | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._running = False
        self._done = False

    def _register_workflows(
        self, workflows: Sequence[type], runner: WorkflowRunner,
        unsandboxed: WorkflowRunner, failure_types: Sequence[type[BaseException]],
        deadlock_timeout: float | None,
    ) -> dict[str, WorkflowRegistration]:
        interceptor_classes = []
        for interceptor in self._interceptors:
            cls = interceptor.workflow_interceptor_class(
                WorkflowInterceptorClassInput(unsafe_extern_functions={}))
            if cls is not None:
                interceptor_classes.append(cls)
        registrations: dict[str, WorkflowRegistration] = {}
        slots = asyncio.Semaphore(self.max_concurrent_workflow_tasks)
        for workflow in workflows:
            defn = temporalio.workflow._Definition.must_from_class(workflow)
            key = defn.name or ""
            if key in registrations:
                raise ValueError(f"more than one workflow named {defn.name or '(dynamic)'}")
            if defn.sandboxed:
                runner.prepare_workflow(defn)  # Fails early on code the sandbox rejects.
            registrations[key] = WorkflowRegistration(
                defn=defn,
                runner=runner if defn.sandboxed else unsandboxed,
                data_converter=self._data_converter,
                interceptor_classes=interceptor_classes,
                failure_exception_types=list(failure_types) + list(defn.failure_exception_types),
                namespace=self._namespace,
                task_queue=self.task_queue,
                deadlock_timeout=deadlock_timeout,
                slots=slots,
            )
        return registrations

    @staticmethod
    def _sync_activities(activities: Sequence[Callable[..., Any]]) -> bool:
        return any(not temporalio.activity._Definition.must_from_callable(a).is_async
                   for a in activities)

    @property
    def client(self) -> temporalio.client.Client:
        """The worker's client (a worker given a database connects when it starts)."""
        if self._client is None:
            raise RuntimeError("this worker connects to its database when it starts: its "
                               "client exists once run() or 'async with' has begun")
        return self._client

    async def _connect(self) -> None:
        if self._client is not None:
            return
        from dbosify.client import Client

        client = await Client.connect(self._database, namespace=self._namespace,
                                      data_converter=self._data_converter)
        self._client = client
        self._owns_client = True
        self.process = client.service_client.process  # type: ignore[attr-defined]

    @property
    def is_running(self) -> bool:
        """Whether the worker is running (started and not shut down)."""
        return self._running

    @property
    def is_shutdown(self) -> bool:
        """Whether the worker has shut down."""
        return self._done

    async def run(self) -> None:
        """Serve the task queue until :meth:`shutdown` is called."""
        if self._running or self._done:
            raise RuntimeError("a worker can only be run once")
        self._running = True
        self._shutdown_requested = asyncio.Event()
        self._started = self._started or asyncio.Event()
        try:
            await self._connect()
            if self._needs_executor:
                self._own_executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrent_activities,
                    thread_name_prefix=f"dbosify-activity-{self.task_queue}")
            if self._activities:
                self.activity_runner = ActivityRunner(
                    task_queue=self.task_queue, activities=self._activities,
                    activity_executor=self._activity_executor or self._own_executor,
                    data_converter=self.client.data_converter,
                    interceptors=self._interceptors, client=self.client,
                    max_concurrent=self.max_concurrent_activities,
                    shared_state_manager=self._shared_state_manager)
                self.activity_runner.start()
            await self.process.add_worker(self)
            self._started.set()
            await self._shutdown_requested.wait()
        except GeneratorExit:
            # The coroutine is being discarded after its event loop closed (a test timed out
            # inside ``async with Worker``): nothing can be awaited any more. The process
            # forgets workers of a dead loop on its own (Process._forget_dead_loop).
            self._running = False
            self._done = True
            raise
        except BaseException:
            await self._stop()
            raise
        else:
            await self._stop()

    async def _stop(self) -> None:
        self.stopping = True
        try:
            if self.activity_runner is not None:
                drained = self.activity_runner.running > 0
                await self.activity_runner.shutdown(self.graceful_shutdown_timeout.total_seconds())
                await self._settle_runs(quiet=0.2 if drained else 0.0)
            if self._client is not None:
                await self.process.remove_worker(self)
            if self._owns_client and self._client is not None and hasattr(self._client, "close"):
                # The client this worker made for itself: released with it (the database
                # stays open while other clients or workers of the process use it).
                await self._client.close()
        finally:
            if self._own_executor is not None:
                # Activities were given the grace period and cancelled; a sync one that ignores
                # cancellation finishes in its thread, which is not waited for.
                self._own_executor.shutdown(wait=False, cancel_futures=True)
            self._running = False
            self._done = True

    async def _settle_runs(self, timeout: float = 10.0, quiet: float = 0.0) -> None:
        # Attempts that ended in the grace period handed their outcomes to their runs in
        # memory; let the runs record them before remove_worker stops the runs (Temporal's
        # server has an outcome once the worker reports it). The wait ends as soon as the runs
        # are idle; the cap is generous because a loaded machine records slowly, and an outcome
        # not recorded means the activity runs again on the next worker.
        # ``quiet``: how long the runs must stay idle before the wait ends. Attempts that were
        # drained hand over their outcomes a few loop turns after the runner's shutdown returns,
        # so an idle run at that moment may still have an outcome on its way.
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        idle_since: float | None = None
        while loop.time() < end:
            busy = any(
                d.outcomes or not d.idle for d in self.process.drivers.values()
                if d.row is not None and d.row.task_queue == self.task_queue and not d.closed
                and d.current_task is not None and not d.current_task.done())
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            if idle_since is not None and loop.time() - idle_since >= quiet:
                return
            await asyncio.sleep(0.005)

    async def shutdown(self) -> None:
        """Stop: running activities get ``graceful_shutdown_timeout`` to finish, then are
        cancelled; the task queue's runs stay running and continue on another worker."""
        if self._shutdown_requested is not None:
            self._shutdown_requested.set()
        if self._run_task is not None:
            await asyncio.gather(self._run_task, return_exceptions=True)

    async def __aenter__(self) -> Worker:
        self._started = asyncio.Event()
        self._run_task = asyncio.get_running_loop().create_task(self.run())
        # Return once the worker serves its queue, so a workflow started next runs at once.
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait([started, self._run_task], return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._run_task.done():
            await self._run_task
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.shutdown()



def _database_of(target: str | Mapping[str, Any] | None) -> str | None:
    """The database URL a worker's first argument names (None: the configured database)."""
    if target is None or isinstance(target, str):
        return target
    if isinstance(target, Mapping):
        url = target.get("system_database_url") or target.get("database_url")
        if url is not None and not isinstance(url, str):
            raise TypeError(f"Worker(config): system_database_url must be a URL string, not "
                            f"{type(url).__name__}")
        return url
    raise TypeError(
        f"Worker's first argument must be a Client, a database URL, a DBOS config dict or None, "
        f"not {type(target).__name__}")
