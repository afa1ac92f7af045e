"""What workflow code prints while its activation is not durable yet, held until it is.

A live activation runs before the commit that records its event and its commands (they commit
together, DESIGN §9.1). Until that commit the activation may still be lost to a crash, and a
recovered run replays the event again; so nothing the code did may be seen before it. Queries
wait on the run's lock; what the code writes to ``sys.stdout``/``sys.stderr`` waits here, in
the activation's thread only, and is written out once the commit is done. A line a workflow
prints is therefore a promise, as on Temporal, that everything before it is durable.

``workflow.logger`` (temporalio's ``temporalio.workflow`` logger) is held the same way: its
records are handled once the commit is done. Only the activation's own thread is held:
activities and other threads print and log at once.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

_local = threading.local()


class _ThreadHeld(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: writes from a thread that holds its output
    go to that thread's buffer; every other write goes to the stream it replaced."""

    def __init__(self, inner: TextIO, name: str) -> None:
        self.inner = inner
        self._name = name

    def write(self, text: str) -> int:
        buffers: dict[str, list[str]] | None = getattr(_local, "buffers", None)
        if buffers is not None:
            buffers[self._name].append(text)
            return len(text)
        return self.inner.write(text)

    def flush(self) -> None:
        if getattr(_local, "buffers", None) is None:
            self.inner.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _HoldRecords(logging.Filter):
    """Keeps the records ``workflow.logger`` makes in a holding thread, for :meth:`release`."""

    def filter(self, record: logging.LogRecord) -> bool:
        records: list[logging.LogRecord] | None = getattr(_local, "records", None)
        if records is None:
            return True
        records.append(record)
        return False


_install_lock = threading.Lock()
_WORKFLOW_LOGGER = logging.getLogger("temporalio.workflow")
_hold_records = _HoldRecords()


def _install() -> None:
    # Wrapped again when someone replaced the stream since (a notebook's capture, pytest).
    if type(sys.stdout) is _ThreadHeld and type(sys.stderr) is _ThreadHeld:
        return
    with _install_lock:
        if _hold_records not in _WORKFLOW_LOGGER.filters:
            _WORKFLOW_LOGGER.addFilter(_hold_records)
        if type(sys.stdout) is not _ThreadHeld and sys.stdout is not None:
            sys.stdout = _ThreadHeld(sys.stdout, "out")
        if type(sys.stderr) is not _ThreadHeld and sys.stderr is not None:
            sys.stderr = _ThreadHeld(sys.stderr, "err")


class HeldOutput:
    """The output of one activation, written out by :meth:`release`."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.records: list[logging.LogRecord] = []

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` in this thread, holding what it prints."""
        _install()
        _local.buffers = {"out": self.out, "err": self.err}
        _local.records = self.records
        try:
            return fn(*args)
        finally:
            _local.buffers = None
            _local.records = None

    def release(self) -> None:
        """Write out what was held (once the activation is durable)."""
        out, self.out = "".join(self.out), []
        err, self.err = "".join(self.err), []
        for text, stream in ((out, sys.stdout), (err, sys.stderr)):
            if text and stream is not None:
                try:
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):
                    pass  # A closed stream: the text had nowhere to go anyway.
        records, self.records = self.records, []
        for record in records:
            logging.getLogger(record.name).handle(record)

    def discard(self) -> None:
        """Drop what was held (the activation is replayed, and prints again)."""
        self.out, self.err, self.records = [], [], []
