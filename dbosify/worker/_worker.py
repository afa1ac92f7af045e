"""dbosify's Worker: temporalio's Worker signature, run on the database (DESIGN §9.1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import temporalio.activity
import temporalio.client
import temporalio.workflow
from temporalio.worker import (
    Interceptor,
    UnsandboxedWorkflowRunner,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)

from dbosify._runtime._activities import ActivityRunner
from dbosify._runtime._instance import DEFAULT_DEADLOCK_TIMEOUT, WorkflowRegistration
from dbosify._runtime._process import Process

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

    Example::

        async with Worker(client, task_queue="q", workflows=[Greet], activities=[say_hi]):
            print(await client.execute_workflow(Greet.run, "Ann", id="g1", task_queue="q"))
    """

    def __init__(
        self,
        client: temporalio.client.Client,
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
        **options: Any,
    ) -> None:
        from dbosify._service._service import DatabaseService

        service = client.service_client
        if not isinstance(service, DatabaseService):
            raise TypeError("dbosify's Worker needs a client from dbosify.client.Client.connect "
                            "(a temporalio Client talks to a Temporal server)")
        for name in options:
            if name in _UNSUPPORTED:
                raise ValueError(f"Worker({name}=...): {_UNSUPPORTED[name]}")
        if not task_queue:
            raise ValueError("Worker needs a task_queue")
        if not activities and not workflows:
            raise ValueError("Worker needs at least one workflow or activity")
        self.client = client
        self.task_queue = task_queue
        self.identity = identity
        if use_worker_versioning and not build_id:
            raise ValueError("build_id must be specified when use_worker_versioning is True")
        # Worker versioning (DESIGN §6): a run started while this worker is the newest of its
        # type is pinned to this build id, and only a worker with it drives the run (and runs
        # its activities on this task queue). None: unversioned, as before.
        self.build_id = build_id
        self.process: Process = service.process
        self.max_concurrent_activities = max_concurrent_activities or 100
        self.max_concurrent_workflow_tasks = max_concurrent_workflow_tasks or 100
        self.graceful_shutdown_timeout = graceful_shutdown_timeout
        self.stopping = False
        # Client interceptors that are also worker interceptors apply to the worker too, as in
        # temporalio.
        self._interceptors: list[Interceptor] = [
            i for i in client.config()["interceptors"] if isinstance(i, Interceptor)
        ] + list(interceptors)
        self._activities = list(activities)
        self._activity_executor = activity_executor
        self.activity_runner: ActivityRunner | None = None
        if activity_executor is None and any(
                not temporalio.activity._Definition.must_from_callable(a).is_async
                for a in activities):
            raise ValueError("sync activities need an activity_executor, e.g. "
                             "concurrent.futures.ThreadPoolExecutor(), as in temporalio")
        self.workflow_registrations = self._register_workflows(
            workflows, workflow_runner or UnsandboxedWorkflowRunner(),
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
                data_converter=self.client.data_converter,
                interceptor_classes=interceptor_classes,
                failure_exception_types=list(failure_types) + list(defn.failure_exception_types),
                namespace=self.client.namespace,
                task_queue=self.task_queue,
                deadlock_timeout=deadlock_timeout,
                slots=slots,
            )
        return registrations

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
            if self._activities:
                self.activity_runner = ActivityRunner(
                    task_queue=self.task_queue, activities=self._activities,
                    activity_executor=self._activity_executor,
                    data_converter=self.client.data_converter,
                    interceptors=self._interceptors, client=self.client,
                    max_concurrent=self.max_concurrent_activities)
                self.activity_runner.start()
            await self.process.add_worker(self)
            self._started.set()
            await self._shutdown_requested.wait()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        self.stopping = True
        try:
            if self.activity_runner is not None:
                await self.activity_runner.shutdown(self.graceful_shutdown_timeout.total_seconds())
                await self._settle_runs()
            await self.process.remove_worker(self)
        finally:
            self._running = False
            self._done = True

    async def _settle_runs(self, timeout: float = 2.0) -> None:
        # Attempts that ended in the grace period handed their outcomes to their runs in
        # memory; let the runs record them before remove_worker stops the runs (Temporal's
        # server has an outcome once the worker reports it).
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and any(
                d.outcomes or not d.idle for d in self.process.drivers.values()
                if d.row is not None and d.row.task_queue == self.task_queue and not d.closed
                and d.current_task is not None and not d.current_task.done()):
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

