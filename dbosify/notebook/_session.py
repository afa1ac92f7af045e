"""A notebook's connection to dbosify: its client, its in-process worker, its saved cells.

Everything here blocks the caller and runs the work on the notebook's background loop
(:mod:`dbosify.notebook._loop`), where the client and every worker live, so a cell that waits
never stalls a run. An interrupt stops a wait, never a run.

>>> import dbosify.notebook as nb                                 # doctest: +SKIP
>>> nb.connect()                                                  # doctest: +SKIP
>>> nb.define('''
... from datetime import timedelta
... from dbosify import activity, workflow
...
... @activity.defn
... async def add_one(x: int) -> int:
...     return x + 1
...
... @workflow.defn
... class AddOne:
...     @workflow.run
...     async def run(self, x: int) -> int:
...         return await workflow.execute_activity(
...             add_one, x, start_to_close_timeout=timedelta(seconds=10))
... ''', namespace=globals())                                     # doctest: +SKIP
>>> nb.result(nb.start("AddOne", 1))                              # doctest: +SKIP
2
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import html
import logging
import os
import uuid
from collections.abc import Coroutine, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import temporalio.client
import temporalio.exceptions
import temporalio.worker
import temporalio.workflow
from temporalio.service import RPCError, RPCStatusCode

from dbosify._runtime._process import close_current, current_process
from dbosify._store._database import DatabaseURL, resolve_database_url
from dbosify.client import Client
from dbosify.notebook import _cells
from dbosify.notebook._cells import CellModule
from dbosify.notebook._config import (
    Dbosify,
    NotebookUsageError,
    Options,
    load_data_converter,
    load_interceptors,
    resolve_options,
)
from dbosify.notebook._handle import RunHandle
from dbosify.notebook._loop import BackgroundLoop, background_loop
from dbosify.notebook._output import route_output
from dbosify.worker import Worker

logger = logging.getLogger("dbosify")
T = TypeVar("T")


def notebook_key(explicit: str | None = None,
                 namespace: MutableMapping[str, Any] | None = None) -> str:
    """The key of a notebook's saved cells: ``explicit`` (``%dbosify connect --notebook``), else
    the notebook's path as Jupyter tells the kernel (``__session__``, set by ipykernel from
    ``JPY_SESSION_NAME``; VS Code's ``__vsc_ipynb_file__``), else the working directory."""
    if explicit:
        return explicit
    ns = namespace or {}
    for candidate in (ns.get("__session__"), ns.get("__vsc_ipynb_file__"),
                      os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate:
            return str(Path(candidate).expanduser().resolve()) if not candidate.startswith(
                ("http:", "https:")) else candidate
    return str(Path.cwd().resolve())


@dataclass
class RestoreReport:
    """What :meth:`Session.restore` re-imported."""

    names: list[str] = field(default_factory=list)
    """Workflow types and activities of the latest versions."""
    cells: int = 0
    older_versions: list[str] = field(default_factory=list)
    """Older versions imported because unfinished runs are pinned to them."""
    pinned_runs: int = 0
    failed: list[str] = field(default_factory=list)
    """Versions that could not be imported (with the reason)."""

    def __str__(self) -> str:
        if not self.cells and not self.older_versions and not self.failed:
            return "dbosify: no saved definitions for this notebook yet"
        text = f"dbosify: restored {', '.join(self.names) or 'nothing'} " \
               f"({self.cells} cell{'s' if self.cells != 1 else ''})"
        if self.older_versions:
            text += (f" and {len(self.older_versions)} older version"
                     f"{'s' if len(self.older_versions) != 1 else ''} for "
                     f"{self.pinned_runs} unfinished run{'s' if self.pinned_runs != 1 else ''}")
        if self.failed:
            text += f"; could not import {'; '.join(self.failed)}"
        return text

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


@dataclass
class Status:
    """What ``%dbosify status`` shows."""

    database: str
    notebook: str
    task_queues: list[str]
    definitions: list[tuple[str, str, str]]
    """(name, kind, version) of the latest definitions."""
    in_flight: list[dict[str, Any]]
    """Running runs of the served task queues, newest first."""

    def __str__(self) -> str:
        lines = [f"database:     {self.database}", f"notebook:     {self.notebook}",
                 f"task queues:  {', '.join(self.task_queues) or '(none)'}",
                 "definitions:  " + (", ".join(f"{n} ({k}, {v})" for n, k, v in self.definitions)
                                     or "(none)"),
                 f"in flight:    {len(self.in_flight)} run(s)"]
        lines += [f"  {r['workflow_id']}  {r['type']}  version {r['version']}"
                  for r in self.in_flight]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Terminal IPython shows the text form, not the dataclass's fields.
        printer.text(str(self))

    def _repr_html_(self) -> str:
        def cell(v: Any) -> str:
            return f"<td style='text-align:left'>{html.escape(str(v))}</td>"

        head = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>{cell(v)}</tr>"
                       for k, v in (("database", self.database), ("notebook", self.notebook),
                                    ("task queues", ", ".join(self.task_queues) or "(none)")))
        defs = "".join(f"<tr>{cell(n)}{cell(k)}{cell(v)}</tr>" for n, k, v in self.definitions)
        runs = "".join(f"<tr>{cell(r['workflow_id'])}{cell(r['type'])}{cell(r['version'])}"
                       f"{cell(r['started'])}</tr>" for r in self.in_flight)
        return (f"<table>{head}</table><b>Saved definitions</b><table><tr><th>name</th>"
                f"<th>kind</th><th>version</th></tr>{defs}</table>"
                f"<b>Runs in flight ({len(self.in_flight)})</b><table><tr><th>workflow id</th>"
                f"<th>type</th><th>version</th><th>started</th></tr>{runs}</table>")


class Session:
    """One notebook's dbosify: a client and an in-process worker per ``%%workflow`` cell version,
    all on the notebook's background loop. Create it with :func:`connect`."""

    def __init__(self, client: Client, db: DatabaseURL, options: Options, notebook: str,
                 loop: BackgroundLoop, config: Dbosify | None) -> None:
        self.client = client
        self.db = db
        self.options = options
        self.notebook = notebook
        self.loop = loop
        self.config = config
        self.cells: dict[str, CellModule] = {}
        """Imported cell versions, by version."""
        self.latest: dict[str, CellModule] = {}
        """Workflow type / activity name -> the newest cell version that defines it."""
        self.workers: dict[str, Worker] = {}
        self.worker_interceptors: list[Any] = []
        """Worker-only interceptors of the options (client ones reach workers through it)."""
        self.identity = f"dbosify-notebook:{notebook}"
        self.closed = False
        # Sync activities of every cell share one pool; its threads are named so their
        # output goes to logging (dbosify.notebook._output).
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=32, thread_name_prefix="dbosify-activity")

    # Running on the background loop -----------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the background loop and wait (interruptible) for its result."""
        if self.closed:
            coro.close()
            raise NotebookUsageError("this dbosify session is closed; connect again")
        return self.loop.run(coro, timeout)

    @property
    def task_queue(self) -> str:
        """The default task queue (``%config Dbosify.task_queue`` applies at once)."""
        if self.config is not None and self.config.task_queue:
            return str(self.config.task_queue)
        return self.options.task_queue

    # Cells --------------------------------------------------------------------------------------

    def define(self, source: str, *, task_queue: str | None = None,
               namespace: MutableMapping[str, Any] | None = None) -> CellModule:
        """Run a ``%%workflow`` cell: import ``source`` as a module, store it as a new version
        (its content hash) unless it is stored already, serve it with a worker pinned to that
        version, and put its names into ``namespace``. New runs of its workflows use this
        version; runs already going stay on theirs."""
        queue = task_queue or self.task_queue
        version = _cells.cell_version(source, queue)
        cell = self.cells.get(version) or _cells.import_cell(source, queue, version)
        if version not in self.workers:
            self._serve(cell)
        self.cells[version] = cell
        self.run(asyncio.to_thread(_cells.save_cell, self._process().store, self.notebook, cell))
        for name in cell.names:
            self.latest[name] = cell
        # The newest version of a workflow type is the one new runs get: make its worker the
        # newest of the process, even when this content ran before.
        self._promote(cell)
        if namespace is not None:
            namespace.update(cell.exports())
        return cell

    def _serve(self, cell: CellModule) -> None:
        try:
            worker = Worker(self.client, task_queue=cell.task_queue,
                            workflows=list(cell.workflows.values()),
                            activities=list(cell.activities.values()),
                            activity_executor=self.executor, build_id=cell.version,
                            identity=self.identity, interceptors=self.worker_interceptors)
        except (ValueError, TypeError) as err:  # e.g. two workflows of one name in the cell
            raise NotebookUsageError(f"this %%workflow cell cannot be served: {err}") from None

        async def start() -> None:
            await worker.__aenter__()

        self.run(start())
        self.workers[cell.version] = worker

    def _promote(self, cell: CellModule) -> None:
        process = self._process()
        worker = self.workers.get(cell.version)

        async def promote() -> None:
            # On the loop, which reads the worker list: no one sees it half changed.
            if worker is not None and worker in process.workers and \
                    process.workers[-1] is not worker:
                process.workers.remove(worker)
                process.workers.append(worker)

        self.run(promote())

    def restore(self, namespace: MutableMapping[str, Any] | None = None) -> RestoreReport:
        """Re-import what this notebook saved: the latest version of each cell (so starts work
        without re-running cells) and every version that unfinished runs are pinned to (so
        they resume). Only this notebook's own cells are restored."""
        store = self._process().store
        saved = self.run(asyncio.to_thread(_cells.saved_cells, store, self.notebook))
        latest = _cells.latest_versions(saved)
        latest_versions = {c.version for c in latest.values()}
        pinned = self.run(asyncio.to_thread(_cells.running_versions, store,
                                            [c.version for c in saved]))
        report = RestoreReport()
        for saved_cell in saved:  # Oldest first, so the newest workers come last.
            if saved_cell.version not in latest_versions and saved_cell.version not in pinned:
                continue
            try:
                cell = self.cells.get(saved_cell.version) or _cells.import_cell(
                    saved_cell.source, saved_cell.task_queue, saved_cell.version)
                if saved_cell.version not in self.workers:
                    self._serve(cell)
            except Exception as err:
                report.failed.append(f"version {saved_cell.version} ({type(err).__name__}: "
                                     f"{err})")
                logger.warning("dbosify: could not restore %%%%workflow version %s",
                               saved_cell.version, exc_info=True)
                continue
            self.cells[cell.version] = cell
            if saved_cell.version in latest_versions:
                report.cells += 1
                for name in cell.names:
                    if latest.get(name) is saved_cell:
                        self.latest[name] = cell
                if namespace is not None:
                    namespace.update(cell.exports())
            else:
                report.older_versions.append(cell.version)
                report.pinned_runs += pinned[cell.version]
        for cell in {id(c): c for c in self.latest.values()}.values():
            self._promote(cell)
        report.names = sorted(name for name, c in latest.items()
                              if self.latest.get(name) is not None)
        return report

    # Workflows ----------------------------------------------------------------------------------

    def workflow_class(self, workflow_type: str, build_id: str = "") -> type | None:
        """The class of a workflow type: the version ``build_id`` if loaded, else the latest."""
        cell = self.cells.get(build_id) if build_id else None
        if cell is not None and workflow_type in cell.workflows:
            return cell.workflows[workflow_type]
        latest = self.latest.get(workflow_type)
        return latest.workflows.get(workflow_type) if latest is not None else None

    def _target(self, workflow: str | type, task_queue: str | None) -> tuple[Any, str, str]:
        """What to start for ``workflow`` (its run method when the class is known, else its
        name), its type name and its task queue."""
        if isinstance(workflow, type):
            defn = temporalio.workflow._Definition.from_class(workflow)
            if defn is None:
                raise NotebookUsageError(f"{workflow.__name__} is not a @workflow.defn class")
            name = defn.name or workflow.__name__
            cls: type | None = workflow
        else:
            name = workflow
            cls = self.workflow_class(name)
        queue = task_queue
        if queue is None:
            cell = self.latest.get(name)
            if cell is None or name not in cell.workflows:
                known = sorted(n for n, c in self.latest.items() if n in c.workflows)
                raise NotebookUsageError(
                    f"unknown workflow type {name!r}: define it in a %%workflow cell first"
                    + (f" (known: {', '.join(known)})" if known else "")
                    + ", or give its task queue with --task-queue")
            queue = cell.task_queue
        target: Any = name
        if cls is not None:
            target = temporalio.workflow._Definition.must_from_class(cls).run_fn
        return target, name, queue

    def start(self, workflow: str | type, *args: Any, id: str | None = None,
              task_queue: str | None = None, **options: Any) -> RunHandle:
        """Start a workflow (a type name or class) and return its handle; ``options`` go to
        temporalio's ``Client.start_workflow`` (``execution_timeout``, ``memo`` ...)."""
        target, name, queue = self._target(workflow, task_queue)
        workflow_id = id or f"{name}-{uuid.uuid4().hex[:8]}"

        async def go() -> temporalio.client.WorkflowHandle[Any, Any]:
            return await self.client.start_workflow(target, args=list(args), id=workflow_id,
                                                    task_queue=queue, **options)

        return RunHandle.of(self._call(go(), workflow_id))

    def execute(self, workflow: str | type, *args: Any, id: str | None = None,
                task_queue: str | None = None, timeout: float | None = None,
                **options: Any) -> Any:
        """Start a workflow and wait for its result (``%workflow start ... --wait``). An
        interrupt, or ``timeout`` seconds, stops the wait; the run goes on."""
        target, name, queue = self._target(workflow, task_queue)
        workflow_id = id or f"{name}-{uuid.uuid4().hex[:8]}"

        async def go() -> Any:
            # One hop to the background loop for both calls: this is the notebook's hot path.
            handle = await self.client.start_workflow(target, args=list(args), id=workflow_id,
                                                      task_queue=queue, **options)
            return await handle.result()

        try:
            return self._call(go(), workflow_id, timeout)
        except TimeoutError:
            raise TimeoutError(f"no result from workflow {workflow_id!r} within {timeout:g} s; "
                               "the run goes on") from None

    def handle(self, workflow_id: str | RunHandle) -> RunHandle:
        """The handle of a workflow id (its latest run)."""
        if isinstance(workflow_id, temporalio.client.WorkflowHandle):
            return RunHandle.of(workflow_id)
        return RunHandle.of(self.client.get_workflow_handle(workflow_id))

    async def _typed(self, workflow_id: str) -> tuple[RunHandle, type | None]:
        handle = self.client.get_workflow_handle(workflow_id)
        desc = await handle.describe()
        cls = self.workflow_class(desc.workflow_type,
                                  desc.raw_description.workflow_execution_info.assigned_build_id)
        return RunHandle.of(handle), cls

    def result(self, workflow_id: str | RunHandle, timeout: float | None = None) -> Any:
        """Wait for a workflow's result (its latest run, following continue-as-new). An
        interrupt, or ``timeout`` seconds, stops the wait; the run goes on."""
        wid = _id_of(workflow_id)

        async def go() -> Any:
            _, cls = await self._typed(wid)
            ret = temporalio.workflow._Definition.must_from_class(cls).ret_type if cls else None
            typed = self.client.get_workflow_handle(wid, result_type=ret)
            return await typed.result()

        try:
            return self._call(go(), wid, timeout)
        except TimeoutError:
            raise TimeoutError(f"no result from workflow {wid!r} within {timeout:g} s; the run "
                               "goes on") from None

    def signal(self, workflow_id: str | RunHandle, name: str, *args: Any) -> None:
        """Send a signal."""
        wid = _id_of(workflow_id)
        self._call(self.client.get_workflow_handle(wid).signal(name, args=list(args)), wid)

    def query(self, workflow_id: str | RunHandle, name: str, *args: Any) -> Any:
        """Ask a query and return its answer."""
        wid = _id_of(workflow_id)

        async def go() -> Any:
            handle, cls = await self._typed(wid)
            ret = _handler_type(cls, "queries", name)
            return await handle.query(name, args=list(args), result_type=ret)

        return self._call(go(), wid)

    def update(self, workflow_id: str | RunHandle, name: str, *args: Any) -> Any:
        """Send an update, wait for it to complete, and return its result."""
        wid = _id_of(workflow_id)

        async def go() -> Any:
            handle, cls = await self._typed(wid)
            ret = _handler_type(cls, "updates", name)
            return await handle.execute_update(name, args=list(args), result_type=ret)

        return self._call(go(), wid)

    def cancel(self, workflow_id: str | RunHandle) -> None:
        """Ask a workflow to cancel (its code decides how)."""
        wid = _id_of(workflow_id)
        self._call(self.client.get_workflow_handle(wid).cancel(), wid)

    def terminate(self, workflow_id: str | RunHandle, reason: str | None = None) -> None:
        """End a workflow at once, without running its code."""
        wid = _id_of(workflow_id)
        self._call(self.client.get_workflow_handle(wid).terminate(reason=reason), wid)

    def _call(self, coro: Coroutine[Any, Any, T], workflow_id: str,
              timeout: float | None = None) -> T:
        try:
            return self.run(coro, timeout)
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT,
                              RPCStatusCode.FAILED_PRECONDITION):
                raise NotebookUsageError(f"workflow {workflow_id!r}: {err.message}") from None
            raise
        except temporalio.exceptions.WorkflowAlreadyStartedError:
            raise NotebookUsageError(f"a workflow with id {workflow_id!r} is already running; "
                                     "choose another --id") from None
        except temporalio.client.WorkflowQueryFailedError as err:
            raise NotebookUsageError(f"workflow {workflow_id!r}: query failed: {err}") from None

    # Status -------------------------------------------------------------------------------------

    def status(self) -> Status:
        """Database, task queues served, saved definitions and runs in flight."""
        process = self._process()
        queues = sorted(process.workflow_queues() | process.activity_queues())
        rows = self.run(asyncio.to_thread(_cells.runs_in_flight, process.store, queues))
        definitions = [(name, "workflow" if name in cell.workflows else "activity",
                        cell.version) for name, cell in sorted(self.latest.items())]
        in_flight = [{"workflow_id": r.workflow_id, "run_id": r.run_id,
                      "type": r.workflow_type, "task_queue": r.task_queue,
                      "version": r.build_id or "(unversioned)",
                      "started": datetime.fromtimestamp(r.start_time_ms / 1000, timezone.utc)}
                     for r in rows]
        return Status(self.db.redacted, self.notebook, queues, definitions, in_flight)

    # Closing ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this session's workers (their runs stay in the database and go on wherever
        a worker with their version runs: here again after :func:`connect`)."""
        if self.closed:
            return

        async def stop() -> None:
            await asyncio.gather(*(w.shutdown() for w in self.workers.values()),
                                 return_exceptions=True)

        try:
            self.loop.run(stop(), 30.0)
        finally:
            self.closed = True
            self.workers.clear()
            self.executor.shutdown(wait=False)

    def _process(self) -> Any:
        process = current_process()
        if process is None:
            raise NotebookUsageError("the dbosify connection was closed; run %dbosify connect")
        return process


def _id_of(workflow_id: str | temporalio.client.WorkflowHandle[Any, Any]) -> str:
    if isinstance(workflow_id, temporalio.client.WorkflowHandle):
        return workflow_id.id
    if not isinstance(workflow_id, str) or not workflow_id:
        raise NotebookUsageError(f"a workflow id must be a non-empty string, not {workflow_id!r}")
    return workflow_id


def _handler_type(cls: type | None, kind: str, name: str) -> type | None:
    if cls is None:
        return None
    defn = temporalio.workflow._Definition.must_from_class(cls)
    handler = getattr(defn, kind).get(name)
    return getattr(handler, "ret_type", None) if handler is not None else None


# The process's session --------------------------------------------------------------------------

_session: Session | None = None


def connect(url: str | None = None, *, notebook: str | None = None,
            task_queue: str | None = None, data_converter: str | None = None,
            interceptors: list[str] | None = None, config: Dbosify | None = None,
            namespace: MutableMapping[str, Any] | None = None,
            restore: bool = True) -> tuple[Session, RestoreReport | None]:
    """Connect this notebook (or any Python process) to dbosify: resolve options and the
    database (DESIGN §3), connect a client on the background loop, and (``restore``) re-import
    the ``%%workflow`` cells this notebook saved, serving them with in-process workers so
    unfinished runs resume. A previous session is closed first (switching databases works).

    Returns the session and what was restored.
    """
    global _session
    options = resolve_options(config, database=url, notebook=notebook, task_queue=task_queue,
                              data_converter=data_converter, interceptors=interceptors)
    db = resolve_database_url(options.database)
    converter = load_data_converter(options.data_converter)
    loaded = load_interceptors(options.interceptors)
    # As with temporalio: a client interceptor (which may be a worker interceptor too) goes to
    # the client, and from there to every worker; a worker-only one goes to the workers.
    client_interceptors = [i for i in loaded if isinstance(i, temporalio.client.Interceptor)]
    worker_interceptors = [i for i in loaded if not isinstance(i, temporalio.client.Interceptor)]
    for interceptor in worker_interceptors:
        if not isinstance(interceptor, temporalio.worker.Interceptor):
            raise NotebookUsageError(
                f"interceptor {type(interceptor).__name__} is neither a "
                "temporalio.client.Interceptor nor a temporalio.worker.Interceptor")
    key = notebook_key(options.notebook, namespace)
    if _session is not None:
        _session.close()
        _session = None
    process = current_process()
    if process is not None and process.db.url != db.url and not process.workers:
        close_current()
    loop = background_loop()
    route_output()
    client = loop.run(Client.connect(db.url, data_converter=converter,
                                     interceptors=client_interceptors,
                                     identity=f"dbosify-notebook:{key}"))
    session = Session(client, db, options, key, loop, config)
    session.worker_interceptors = worker_interceptors
    _session = session
    _close_at_exit()
    report = session.restore(namespace) if restore else None
    return session, report


_exit_hook = False


def _close_at_exit() -> None:
    # A kernel that shuts down cleanly gives its runs back at once (its workers stop), so a
    # new kernel, or another worker with their versions, takes them without waiting.
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True

        def close_quietly() -> None:
            try:
                close()
            except BaseException:  # Exiting anyway; the lease covers what was not released.
                pass

        atexit.register(close_quietly)


def current_session(namespace: MutableMapping[str, Any] | None = None) -> Session:
    """The process's session, connecting (with defaults) on first use."""
    if _session is None or _session.closed:
        return connect(namespace=namespace)[0]
    return _session


def close() -> None:
    """Close the session (its workers stop; runs stay in the database)."""
    global _session
    if _session is not None:
        _session.close()
        _session = None


# The API on the process's session ---------------------------------------------------------------


def define(source: str, *, task_queue: str | None = None,
           namespace: MutableMapping[str, Any] | None = None) -> CellModule:
    """:meth:`Session.define` on the current session."""
    return current_session(namespace).define(source, task_queue=task_queue, namespace=namespace)


def start(workflow: str | type, *args: Any, id: str | None = None,
          task_queue: str | None = None, **options: Any) -> RunHandle:
    """:meth:`Session.start` on the current session."""
    return current_session().start(workflow, *args, id=id, task_queue=task_queue, **options)


def execute(workflow: str | type, *args: Any, id: str | None = None,
            task_queue: str | None = None, timeout: float | None = None, **options: Any) -> Any:
    """:meth:`Session.execute` on the current session."""
    return current_session().execute(workflow, *args, id=id, task_queue=task_queue,
                                     timeout=timeout, **options)


def result(workflow_id: str | RunHandle, timeout: float | None = None) -> Any:
    """:meth:`Session.result` on the current session."""
    return current_session().result(workflow_id, timeout)


def signal(workflow_id: str | RunHandle, name: str, *args: Any) -> None:
    """:meth:`Session.signal` on the current session."""
    current_session().signal(workflow_id, name, *args)


def query(workflow_id: str | RunHandle, name: str, *args: Any) -> Any:
    """:meth:`Session.query` on the current session."""
    return current_session().query(workflow_id, name, *args)


def update(workflow_id: str | RunHandle, name: str, *args: Any) -> Any:
    """:meth:`Session.update` on the current session."""
    return current_session().update(workflow_id, name, *args)


def cancel(workflow_id: str | RunHandle) -> None:
    """:meth:`Session.cancel` on the current session."""
    current_session().cancel(workflow_id)


def terminate(workflow_id: str | RunHandle, reason: str | None = None) -> None:
    """:meth:`Session.terminate` on the current session."""
    current_session().terminate(workflow_id, reason)


def status() -> Status:
    """:meth:`Session.status` on the current session."""
    return current_session().status()
