"""``%%workflow`` cells as modules, and their saved versions (DESIGN §6).

A cell's source is imported as a module of its own (its own imports; it does not see the
notebook's variables), and stored in the database with its content hash, which is its version:
the build id its worker serves, so a run stays on the code it started with.
"""

from __future__ import annotations

import hashlib
import json
import linecache
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import temporalio.activity
import temporalio.workflow

from dbosify._store import _tables as t
from dbosify._store._store import RUNNING, Store, now_ms
from dbosify.notebook._config import NotebookUsageError

_PACKAGE = "dbosify_cells"


def cell_version(source: str, task_queue: str) -> str:
    """A cell's version: the hash of its content and task queue (a Temporal build id)."""
    digest = hashlib.sha256(f"{task_queue}\n{source}".encode()).hexdigest()
    return digest[:12]


@dataclass
class CellModule:
    """One imported version of a ``%%workflow`` cell."""

    version: str
    """Content hash, and the build id of the worker serving the cell."""
    task_queue: str
    source: str
    module: types.ModuleType
    workflows: dict[str, type] = field(default_factory=dict)
    """Workflow type name -> class defined by the cell."""
    activities: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """Activity name -> function the cell defines or imports."""

    @property
    def names(self) -> list[str]:
        """The workflow types and activity names the cell defines."""
        return sorted(self.workflows) + sorted(self.activities)

    def exports(self) -> dict[str, Any]:
        """The names the cell defines, for the notebook's namespace: its public globals,
        without the modules it imported or objects it imported from elsewhere."""
        out = {}
        for name, value in vars(self.module).items():
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            origin = getattr(value, "__module__", None)
            if isinstance(value, (type, types.FunctionType)) and origin != self.module.__name__ \
                    and value not in self.activities.values():
                continue
            out[name] = value
        return out


def import_cell(source: str, task_queue: str, version: str | None = None) -> CellModule:
    """Import a cell's source as the module ``dbosify_cells.v<version>``.

    Raises :class:`NotebookUsageError` if it defines no workflow and no activity; any error
    its code raises propagates (with tracebacks that show the cell's lines).
    """
    version = version or cell_version(source, task_queue)
    name = f"{_PACKAGE}.v{version}"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__dbosify_source__", None) == source:
        module = existing
    else:
        if _PACKAGE not in sys.modules:
            package = types.ModuleType(_PACKAGE, "Modules of dbosify's %%workflow cells.")
            package.__path__ = []
            sys.modules[_PACKAGE] = package
        filename = f"<%%workflow {version}>"
        # Tracebacks and inspect.getsource() show the cell's lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(name, f"%%workflow cell, version {version}")
        module.__file__ = filename
        module.__dbosify_source__ = source  # type: ignore[attr-defined]
        sys.modules[name] = module
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
    cell = CellModule(version=version, task_queue=task_queue, source=source, module=module)
    try:
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name:
                defn = temporalio.workflow._Definition.from_class(value)
                if defn is not None:
                    _add(cell.workflows, defn.name or "", value, "workflow")
            elif callable(value):
                act = temporalio.activity._Definition.from_callable(value)
                if act is not None:
                    _add(cell.activities, act.name or "", value, "activity")
        if not cell.workflows and not cell.activities:
            raise NotebookUsageError(
                "this %%workflow cell defines no @workflow.defn class and no @activity.defn "
                "function; put other code in an ordinary cell")
    except NotebookUsageError:
        del sys.modules[name]
        raise
    return cell


def _add(found: dict[str, Any], key: str, value: Any, kind: str) -> None:
    if key in found and found[key] is not value:
        shown = key or "(dynamic)"
        raise NotebookUsageError(
            f"this %%workflow cell defines two {kind}s named {shown!r} "
            f"({getattr(found[key], '__name__', found[key])} and "
            f"{getattr(value, '__name__', value)}); give one another name")
    found[key] = value


@dataclass(frozen=True)
class SavedCell:
    """A stored version of a cell."""

    version: str
    task_queue: str
    source: str
    names: list[str]
    updated_ms: int


def save_cell(store: Store, notebook: str, cell: CellModule) -> None:
    """Store a cell version (or mark it the newest again, when it ran before)."""
    c = t.notebook_cells
    with store.engine.begin() as conn:
        updated = conn.execute(sa.update(c).where(c.c.notebook == notebook,
                                                  c.c.version == cell.version)
                               .values(updated_ms=now_ms())).rowcount
        if not updated:
            conn.execute(sa.insert(c).values(
                notebook=notebook, version=cell.version, task_queue=cell.task_queue,
                source=cell.source, names=json.dumps(cell.names), updated_ms=now_ms()))


def saved_cells(store: Store, notebook: str) -> list[SavedCell]:
    """The cell versions a notebook saved, oldest first."""
    c = t.notebook_cells
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c).where(c.c.notebook == notebook)
                            .order_by(c.c.updated_ms, c.c.version)).all()
    return [SavedCell(r.version, r.task_queue, r.source, json.loads(r.names), r.updated_ms)
            for r in rows]


def latest_versions(cells: list[SavedCell]) -> dict[str, SavedCell]:
    """For each name, the newest saved version that defines it."""
    latest: dict[str, SavedCell] = {}
    for cell in cells:  # Oldest first: newer ones overwrite.
        for name in cell.names:
            latest[name] = cell
    return latest


def running_versions(store: Store, versions: list[str]) -> dict[str, int]:
    """How many running runs are pinned to each of these versions."""
    if not versions:
        return {}
    r = t.runs
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(r.c.build_id, sa.func.count())
                            .where(r.c.status == RUNNING, r.c.build_id.in_(versions))
                            .group_by(r.c.build_id)).all()
    return {row[0]: int(row[1]) for row in rows}


def runs_in_flight(store: Store, task_queues: list[str], limit: int = 20) -> list[Any]:
    """Running runs of these task queues, newest first."""
    if not task_queues:
        return []
    r = t.runs
    with store.engine.connect() as conn:
        return list(conn.execute(
            sa.select(r.c.workflow_id, r.c.run_id, r.c.workflow_type, r.c.task_queue,
                      r.c.build_id, r.c.start_time_ms)
            .where(r.c.status == RUNNING, r.c.task_queue.in_(task_queues))
            .order_by(r.c.start_time_ms.desc()).limit(limit)).all())
