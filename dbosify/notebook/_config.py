"""A notebook's dbosify options: ``%config Dbosify.<option>``, ``[tool.dbosify]``, defaults.

Precedence, highest first: an argument given to :func:`dbosify.notebook.connect` (or
``%dbosify connect``), ``%config Dbosify.<option> = value``, the ``[tool.dbosify]`` table of the
nearest ``pyproject.toml`` upward from the working directory, the default. The database also
honours ``DBOSIFY_DATABASE_URL`` as DESIGN §3 orders it (after an explicit value).

Example ``pyproject.toml``, shared by a team's notebooks and workers::

    [tool.dbosify]
    database = "postgresql://localhost/app"
    task_queue = "etl"
    data_converter = "app.codecs:converter"
    interceptors = ["app.tracing:TracingInterceptor"]
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any

import temporalio.converter
from traitlets import List, Unicode
from traitlets.config import Configurable

from dbosify._store._database import project_settings

logger = logging.getLogger("dbosify")

DEFAULT_TASK_QUEUE = "dbosify"
_KNOWN_KEYS = {"database", "task_queue", "data_converter", "interceptors", "notebook"}


class NotebookUsageError(ValueError):
    """A mistake in how the notebook API (or a magic) was used; the message says what to do.

    The magics show it as one line (IPython's ``UsageError``), never a traceback.
    """


class Dbosify(Configurable):
    """dbosify's options in a notebook, set with ``%config Dbosify.<option> = value``.

    >>> %config Dbosify.task_queue = "etl"                  # doctest: +SKIP
    >>> %config Dbosify.data_converter = "app.codecs:converter"   # doctest: +SKIP
    """

    database = Unicode(None, allow_none=True,
                       help="Database URL (postgresql://... or sqlite:///...); default: "
                            "DBOSIFY_DATABASE_URL, [tool.dbosify], else the embedded "
                            ".dbosify/dbosify.sqlite of the project.").tag(config=True)
    task_queue = Unicode(None, allow_none=True,
                         help=f"Task queue of %%workflow cells and starts (default "
                              f"{DEFAULT_TASK_QUEUE!r}).").tag(config=True)
    data_converter = Unicode(None, allow_none=True,
                             help="Import path of a temporalio DataConverter (or a callable "
                                  "returning one), e.g. 'app.codecs:converter'.").tag(config=True)
    interceptors = List(Unicode(), default_value=[],
                        help="Import paths of client/worker interceptors (classes are "
                             "instantiated with no arguments).").tag(config=True)
    notebook = Unicode(None, allow_none=True,
                       help="Key of this notebook's saved %%workflow cells (default: the "
                            "notebook's path when Jupyter tells the kernel, else the working "
                            "directory).").tag(config=True)


@dataclass
class Options:
    """Resolved options of one session."""

    database: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    data_converter: str | None = None
    interceptors: list[str] = field(default_factory=list)
    notebook: str | None = None


def resolve_options(config: Dbosify | None = None, **explicit: Any) -> Options:
    """Options from arguments, then ``config`` (``%config``), then ``[tool.dbosify]``."""
    settings, folder = project_settings()
    unknown = set(settings) - _KNOWN_KEYS
    if unknown:
        logger.warning("[tool.dbosify] in %s/pyproject.toml: unknown option(s) %s ignored; "
                       "known: %s", folder, ", ".join(sorted(unknown)),
                       ", ".join(sorted(_KNOWN_KEYS)))
    options = Options()
    for key in _KNOWN_KEYS:
        value = explicit.get(key)
        if value is None and config is not None:
            value = getattr(config, key)
            if value == []:
                value = None
        if value is None:
            value = settings.get(key)
        if value is None:
            continue
        if key == "interceptors":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, str) for v in value):
                raise NotebookUsageError(
                    "interceptors must be a list of import paths, e.g. "
                    "['app.tracing:TracingInterceptor']")
            value = list(value)
        elif not isinstance(value, str):
            raise NotebookUsageError(f"{key} must be a string, not {type(value).__name__}")
        setattr(options, key, value)
    if not options.task_queue:
        raise NotebookUsageError("the task queue must not be empty")
    return options


def import_path(path: str, what: str) -> Any:
    """The object an import path names: ``package.module:attr`` or ``package.module.attr``."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise NotebookUsageError(f"{what} {path!r} is not an import path: write it like "
                                 "'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise NotebookUsageError(f"{what} {path!r}: cannot import {module_name!r} ({err})") \
            from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NotebookUsageError(f"{what} {path!r}: {module_name!r} has no {attr!r}") \
                from None
    return obj


def load_data_converter(path: str | None) -> temporalio.converter.DataConverter:
    """The data converter an import path names (an instance, or a callable returning one)."""
    if path is None:
        return temporalio.converter.DataConverter.default
    obj = import_path(path, "data_converter")
    if not isinstance(obj, temporalio.converter.DataConverter) and callable(obj):
        obj = obj()
    if not isinstance(obj, temporalio.converter.DataConverter):
        raise NotebookUsageError(f"data_converter {path!r} is not a "
                                 "temporalio.converter.DataConverter")
    return obj


def load_interceptors(paths: list[str]) -> list[Any]:
    """Interceptor instances (a class named by a path is instantiated with no arguments)."""
    out = []
    for path in paths:
        obj = import_path(path, "interceptor")
        if isinstance(obj, type):
            obj = obj()
        out.append(obj)
    return out
