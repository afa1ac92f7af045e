"""What every ``dbosify`` command shares: settings, errors, JSON arguments, tables.

Kept light on purpose: a read-only command (``runs``, ``show``, ``result``) must answer within a
second, so nothing here imports DBOS, temporalio's client or the engine; commands import what they
use.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import temporalio.client
    import temporalio.converter

    from dbosify._store._database import DatabaseURL

T = TypeVar("T")

DEFAULT_TASK_QUEUE = "dbosify"
"""The task queue when neither an option nor ``[tool.dbosify] task_queue`` names one."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(click.ClickException):
    """A failure the user can act on: one line on stderr, exit code 1 (2 for usage)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        # click declares exit_code on the class; each error carries its own.
        self.exit_code = exit_code  # type: ignore[misc]


def usage(message: str) -> CommandError:
    """A usage mistake (bad input): exit code 2."""
    return CommandError(message, EXIT_USAGE)


def settings() -> dict[str, Any]:
    """``[tool.dbosify]`` of the nearest ``pyproject.toml`` (empty without one)."""
    from dbosify._exceptions import DatabaseError
    from dbosify._store._database import project_settings

    try:
        return project_settings()[0]
    except DatabaseError as err:
        raise usage(str(err)) from None


def task_queue(given: str | None) -> str:
    """The option, else ``[tool.dbosify] task_queue``, else ``dbosify``."""
    if given:
        return given
    configured = settings().get("task_queue")
    if configured is not None and (not isinstance(configured, str) or not configured):
        raise usage("task_queue in [tool.dbosify] must be a non-empty string")
    return configured or DEFAULT_TASK_QUEUE


def database(given: str | None) -> DatabaseURL:
    """Where the data lives (DESIGN §3): ``--database``, ``DBOSIFY_DATABASE_URL``,
    ``DBOS_SYSTEM_DATABASE_URL``, ``[tool.dbosify] database``, the embedded default."""
    from dbosify._exceptions import DatabaseError
    from dbosify._store._database import resolve_database_url

    try:
        return resolve_database_url(given)
    except DatabaseError as err:
        raise usage(str(err)) from None


def data_converter() -> temporalio.converter.DataConverter:
    """``[tool.dbosify] data_converter`` (an import path), else temporalio's default."""
    import importlib

    import temporalio.converter

    path = settings().get("data_converter")
    if not path:
        return temporalio.converter.DataConverter.default
    module_name, _, attr = str(path).partition(":")
    if not attr:
        module_name, _, attr = str(path).rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise usage(f"data_converter {path!r} in [tool.dbosify]: cannot load it ({err})") \
            from None
    if not isinstance(obj, temporalio.converter.DataConverter) and callable(obj):
        obj = obj()
    if not isinstance(obj, temporalio.converter.DataConverter):
        raise usage(f"data_converter {path!r} in [tool.dbosify] is not a DataConverter")
    return obj


def json_values(words: Sequence[str], what: str = "argument") -> list[Any]:
    """One JSON value per word: ``3`` is 3, ``'"Ann"'`` is "Ann", ``'{"a": 1}'`` a dict.

    A word that is not JSON is a usage error, except a bare word (``Ann``), passed as a string
    because shells make quoting JSON strings awkward.
    """
    values = []
    for word in words:
        try:
            values.append(json.loads(word))
        except json.JSONDecodeError:
            if word and word.replace("-", "").replace("_", "").replace(".", "").isalnum() \
                    and not word[0].isdigit():
                values.append(word)
                continue
            raise usage(f"{what} {word!r} is not a JSON value (strings: '\"text\"', objects: "
                        "'{\"key\": 1}')") from None
    return values


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on a fresh event loop."""
    return asyncio.run(coro)


async def connect(database_url: str | None) -> temporalio.client.Client:
    """dbosify's client on the resolved database (imports the engine: ~1.5 s)."""
    from dbosify._exceptions import DatabaseError
    from dbosify.client import Client

    db = database(database_url)
    try:
        return await Client.connect(db.url, data_converter=data_converter(),
                                    identity=f"dbosify-cli@{os.uname().nodename}")
    except DatabaseError as err:
        raise CommandError(str(err)) from None


@contextmanager
def rpc_errors(workflow_id: str | None = None) -> Iterator[None]:
    """temporalio's errors as one line: an unknown id, a refused request."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        yield
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND and workflow_id is not None:
            raise CommandError(f"no workflow with id {workflow_id!r} ({err.message}); "
                               "`dbosify runs` lists them") from None
        raise CommandError(err.message or str(err)) from None


# -- tables -----------------------------------------------------------------------------------

_MAX_WIDTH = 48


def cell(value: Any) -> str:
    """A value as a table shows it: short, one line."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"{seconds:.3f}s" if seconds < 60 else str(value).split(".")[0]
    if isinstance(value, BaseException):
        text = str(value) or type(value).__name__
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_WIDTH else text[:_MAX_WIDTH - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with a header line; empty columns are left out."""
    shown = [c for c in columns if any(row.get(c) not in (None, "") for row in rows)]
    texts = [[cell(row.get(c)) for c in shown] for row in rows]
    widths = [max([len(c), *(len(t[i]) for t in texts)]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(t.ljust(w) for t, w in zip(text, widths, strict=True)).rstrip()
              for text in texts]
    return "\n".join(lines)


def show_value(value: Any) -> str:
    """A result for stdout: JSON when it is JSON, else its repr."""
    try:
        return json.dumps(value, default=_default)
    except (TypeError, ValueError):
        return repr(value)


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, timedelta)):
        return str(value)
    raise TypeError


class Progress:
    """A progress bar on stderr while a long command works, when stderr is a terminal (silent
    in pipes and tests). Its length may be given late: ``step(done, total)``."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._done = 0

    def step(self, done: int, total: int) -> None:
        """``done`` of ``total`` steps are finished."""
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.length = total
        self._bar.update(done - self._done)
        self._done = done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
