"""Workflow cells as modules: the source of a ``%%workflow`` cell imported as a versioned module.

Shared by the notebook (which stores each version and serves it) and by promotion (which imports
a notebook file's cells to check them), so it sits below both and imports neither.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import temporalio.activity
import temporalio.workflow

from dbosify._exceptions import DbosifyError


class CellError(DbosifyError, ValueError):
    """A ``%%workflow`` cell that cannot serve as one: it defines no workflow and no activity,
    or two of one name. The message says what to change."""


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

    Raises :class:`CellError` if it defines no workflow and no activity; any error
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
        for cls in list(cell.workflows.values()):
            for fn in declared_activities(cls):
                act = temporalio.activity._Definition.from_callable(fn)
                if act is not None:
                    _add(cell.activities, act.name or "", fn, "activity")
        if not cell.workflows and not cell.activities:
            raise CellError(
                "this %%workflow cell defines no @workflow.defn class and no @activity.defn "
                "function; put other code in an ordinary cell")
    except CellError:
        del sys.modules[name]
        raise
    return cell


def declared_activities(workflow_class: type) -> list[Callable[..., Any]]:
    """Activities a workflow class calls that are defined elsewhere and that it names itself
    with a ``template_activities()`` classmethod, as :mod:`dbosify.pipelines`' templates do
    (an ingest's batch activities live in dbosify): a worker serving the class serves them,
    so a cell or module that subclasses a template needs to register nothing more."""
    declare = getattr(workflow_class, "template_activities", None)
    return list(declare()) if callable(declare) else []


def _add(found: dict[str, Any], key: str, value: Any, kind: str) -> None:
    if key in found and found[key] is not value:
        shown = key or "(dynamic)"
        raise CellError(
            f"this %%workflow cell defines two {kind}s named {shown!r} "
            f"({getattr(found[key], '__name__', found[key])} and "
            f"{getattr(value, '__name__', value)}); give one another name")
    found[key] = value
