"""Output of workflow and activity code goes to logging, not into whichever cell runs.

Workflow and activity code runs in dbosify's threads (the notebook loop, the workflow and
activity pools). Jupyter would show what they print under the cell that happens to be running
(or lose it); instead :func:`route_output` sends it to the ``dbosify.output`` logger, line by
line, while everything else printed still reaches the cell.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

output_logger = logging.getLogger("dbosify.output")

_THREAD_PREFIXES = ("dbosify-",)


def _ours() -> bool:
    return threading.current_thread().name.startswith(_THREAD_PREFIXES)


class _RoutedStream:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that sends dbosify threads' text to a logger."""

    def __init__(self, target: TextIO, level: int) -> None:
        self._target = target
        self._level = level
        self._partial = threading.local()

    def write(self, text: str) -> int:
        # A logging handler that writes to this stream from our thread would loop: it goes
        # to the real stream.
        if not _ours() or getattr(self._partial, "busy", False):
            return self._target.write(text)
        pending = getattr(self._partial, "text", "") + text
        *lines, rest = pending.split("\n")
        self._partial.text = rest
        self._partial.busy = True
        try:
            for line in lines:
                output_logger.log(self._level, "%s", line)
        finally:
            self._partial.busy = False
        return len(text)

    def flush(self) -> None:
        if not _ours():
            self._target.flush()
            return
        rest = getattr(self._partial, "text", "")
        if rest and not getattr(self._partial, "busy", False):
            self._partial.text = ""
            self._partial.busy = True
            try:
                output_logger.log(self._level, "%s", rest)
            finally:
                self._partial.busy = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def route_output() -> None:
    """Send what dbosify's threads print to the ``dbosify.output`` logger (idempotent)."""
    if not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _RoutedStream(sys.stdout, logging.INFO)
    if not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _RoutedStream(sys.stderr, logging.WARNING)


def unroute_output() -> None:
    """Undo :func:`route_output`."""
    if isinstance(sys.stdout, _RoutedStream):
        sys.stdout = sys.stdout._target
    if isinstance(sys.stderr, _RoutedStream):
        sys.stderr = sys.stderr._target
