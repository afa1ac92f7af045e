"""What the widgets share: refreshing on the notebook's background loop, and HTML tables."""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import traitlets

from dbosify.notebook._loop import background_loop, run_sync


class Refreshing(traitlets.HasTraits):
    """A widget whose state comes from the database, read again every ``interval`` seconds.

    Each read runs on the notebook's background loop, never on the kernel's thread, so a
    periodic refresh does not block cells. :meth:`refresh` reads once and waits (what tests
    call); :meth:`start` / :meth:`stop` run and stop the periodic refresh.
    """

    interval = traitlets.Float(2.0, help="Seconds between two periodic refreshes.")
    refreshing = traitlets.Bool(False, help="Whether the periodic refresh runs.")
    refreshes = traitlets.Int(0, help="How many refreshes have completed.")
    error = traitlets.Unicode("", help="The last refresh's error, '' when it went fine.")
    updated = traitlets.Unicode("", help="When the last refresh completed (ISO time).")

    _periodic: concurrent.futures.Future[None] | None = None

    async def _fetch(self) -> Mapping[str, Any]:
        """Read the state; returns trait values to set. Runs on the background loop."""
        raise NotImplementedError

    def _finished(self) -> bool:
        """Whether there is nothing left to watch (the periodic refresh then stops)."""
        return False

    def _apply(self, values: Mapping[str, Any]) -> None:
        with self.hold_trait_notifications():
            for name, value in values.items():
                setattr(self, name, value)
            self.error = ""
            self.updated = datetime.now().astimezone().isoformat(timespec="seconds")
            self.refreshes += 1

    async def _refresh_once(self) -> None:
        try:
            values = await self._fetch()
        except Exception as err:  # Shown in the widget; the next refresh tries again.
            self.error = f"{type(err).__name__}: {err}"
            return
        self._apply(values)

    def refresh(self, timeout: float | None = 30.0) -> None:
        """Read the state now and wait for it (from a cell, a callback or a test)."""
        run_sync(self._refresh_once(), timeout)

    def start(self, interval: float | None = None) -> None:
        """Refresh every ``interval`` seconds (default: the ``interval`` trait) in the
        background until :meth:`stop`, or until there is nothing left to watch."""
        if interval is not None:
            self.interval = interval
        self.stop()
        self.refreshing = True
        self._periodic = background_loop().submit(self._loop())

    async def _loop(self) -> None:
        try:
            while True:
                await self._refresh_once()
                if self._finished():
                    return
                await asyncio.sleep(max(self.interval, 0.05))
        finally:
            self.refreshing = False

    def stop(self) -> None:
        """Stop the periodic refresh (the widget keeps its last state)."""
        periodic, self._periodic = self._periodic, None
        self.refreshing = False
        if periodic is not None:
            periodic.cancel()
            if _running_loop() is background_loop().loop:
                return  # called from the loop itself (a callback): it cannot wait for itself
            try:
                periodic.result(timeout=5)
            except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
                pass
        self.refreshing = False


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def cell_text(value: Any) -> str:
    """A value as a table shows it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def format_duration(value: timedelta) -> str:
    """``1.234 s``, ``2 min 5 s``, ``3 h 4 min``."""
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
               empty: str = "nothing yet") -> str:
    """An escaped HTML table of ``rows``."""
    if not rows:
        return f"<i>{html.escape(empty)}</i>"
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell_text(row.get(c)))}</td>" for c in columns)
        + "</tr>" for row in rows)
    return (f"<table class='dbosify-table'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")
