"""``dbosify worker MODULE_OR_FILE``: a long-lived, headless worker.

It serves every workflow and activity the module defines or imports, on one task queue, and
the activities its ``dbosify.pipelines`` templates call (no ``ACTIVITIES`` to list). Runs
left pending (by a crashed worker, or started while none ran) are picked up when it starts, as
any dbosify worker does. One line is logged per finished run. SIGTERM or Ctrl-C stops it:
running activities get :data:`GRACEFUL_SHUTDOWN` to finish, then it exits 0; runs it did not
finish stay running and continue on the next worker.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import signal
import sys
import time
import types
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import temporalio.activity
import temporalio.exceptions
import temporalio.worker
import temporalio.workflow

from dbosify._cells import declared_activities
from dbosify.cli._common import CommandError, usage

logger = logging.getLogger("dbosify.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
"""How long running activities may take to finish after SIGTERM before they are cancelled."""


def load_module(target: str) -> types.ModuleType:
    """A module by import name (``app.pipeline``) or file path (``pipelines/x/pipeline.py``).

    A file is imported under its stem with its folder first on ``sys.path``, so modules beside
    it import as they do when it runs as a script.
    """
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise usage(f"no such file: {target}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
        if spec is None or spec.loader is None:
            raise usage(f"cannot import {target}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[path.stem]
            raise CommandError(f"importing {target} failed: {type(err).__name__}: {err}") \
                from None
        return module
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if err.name and target.startswith(err.name):
            raise usage(f"no module or file {target!r}: give a module name (app.pipeline) "
                        "or a path (pipelines/x/pipeline.py)") from None
        raise CommandError(f"importing {target} failed: {err}") from None
    except Exception as err:
        raise CommandError(f"importing {target} failed: {type(err).__name__}: {err}") from None


def definitions(module: types.ModuleType) -> tuple[list[type], list[Callable[..., Any]]]:
    """The workflow classes and activity functions a module holds, sorted by name, with the
    activities its pipelines call (``dbosify.pipelines`` templates' own, and the activity a
    ``Backfill`` or ``FanOut`` maps) even when the module does not name them."""
    workflows: dict[str, type] = {}
    activities: dict[str, Callable[..., Any]] = {}

    def add_activity(value: Any) -> None:
        act = temporalio.activity._Definition.from_callable(value)
        if act is not None:
            activities.setdefault(act.name or "", value)

    for value in vars(module).values():
        if isinstance(value, type):
            defn = temporalio.workflow._Definition.from_class(value)
            if defn is not None:
                workflows.setdefault(defn.name or "", value)
        elif callable(value):
            add_activity(value)
    for cls in list(workflows.values()):
        for fn in declared_activities(cls):
            add_activity(fn)
    return ([workflows[k] for k in sorted(workflows)],
            [activities[k] for k in sorted(activities)])


class _RunLog(temporalio.worker.Interceptor):
    """Logs one line when a run ends on this worker (not while it replays)."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput,
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _RunLogInbound


class _RunLogInbound(temporalio.worker.WorkflowInboundInterceptor):
    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        info = temporalio.workflow.info()
        began = time.monotonic()
        outcome = "completed"
        try:
            return await super().execute_workflow(input)
        except temporalio.workflow.ContinueAsNewError:
            outcome = "continued as new"
            raise
        except asyncio.CancelledError:
            outcome = "canceled"
            raise
        except temporalio.exceptions.CancelledError:
            outcome = "canceled"
            raise
        except Exception as err:
            outcome = f"failed: {type(err).__name__}: {err}"
            raise
        finally:
            with temporalio.workflow.unsafe.sandbox_unrestricted():
                if not temporalio.workflow.unsafe.is_replaying():
                    elapsed = time.monotonic() - began
                    logger.info("%s %s (run %s) %s in %.2fs", info.workflow_type,
                                info.workflow_id, info.run_id, outcome, elapsed)


def serve(target: str, task_queue: str, database: str | None, identity: str | None) -> None:
    """Run the worker until SIGTERM or Ctrl-C; exit 0 after a clean shutdown."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    # A stop asked for while the worker is still starting is honoured once it runs: it then
    # stops at once, cleanly, instead of dying half-started.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: early.append(number))
    module = load_module(target)
    workflows, activities = definitions(module)
    promoted_queue = getattr(module, "TASK_QUEUE", None)
    if isinstance(promoted_queue, str) and promoted_queue != task_queue:
        # A promoted module names the queue its schedule starts runs on.
        logger.warning("%s was promoted for task queue %r but this worker serves %r: its "
                       "scheduled runs wait for a worker started with --task-queue %s",
                       target, promoted_queue, task_queue, promoted_queue)
    if not workflows and not activities:
        raise usage(f"{target} defines no @workflow.defn class and no @activity.defn "
                    "function: nothing to serve")
    asyncio.run(_serve(workflows, activities, task_queue, database, identity, target, early))


async def _serve(workflows: list[type], activities: list[Callable[..., Any]], task_queue: str,
                 database: str | None, identity: str | None, target: str,
                 early: list[int]) -> None:
    from dbosify._exceptions import DatabaseError
    from dbosify.cli._common import connect
    from dbosify.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if early:
        stop.set()
    client = await connect(database)
    try:
        try:
            worker = Worker(client, task_queue=task_queue, workflows=workflows,
                            activities=activities, identity=identity,
                            interceptors=[_RunLog()],
                            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN)
        except (ValueError, TypeError) as err:
            raise usage(f"{target}: {err}") from None
        names = [temporalio.workflow._Definition.must_from_class(w).name for w in workflows]
        acts = [temporalio.activity._Definition.must_from_callable(a).name for a in activities]
        try:
            async with worker:
                logger.info("serving task queue %r: workflows %s; activities %s (SIGTERM or "
                            "Ctrl-C stops)", task_queue, ", ".join(map(str, names)) or "-",
                            ", ".join(map(str, acts)) or "-")
                await stop.wait()
                logger.info("stopping: running activities get %ss to finish",
                            GRACEFUL_SHUTDOWN.total_seconds())
        except DatabaseError as err:
            raise CommandError(str(err)) from None
    finally:
        await client.close()  # type: ignore[attr-defined]
    logger.info("stopped")
