"""RunsMonitor: a live table of runs."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import temporalio.client
import traitlets

from dbosify.history import run_rows
from dbosify.widgets._refresh import Refreshing, html_table

COLUMNS = ("status", "type", "id", "started", "duration", "activity")
"""Columns of the monitor's table."""


class RunsMonitor(Refreshing, widgets.VBox):  # type: ignore[misc]
    """A live table of the runs matching a visibility query: status, type, id, started,
    duration and current activity, newest first.

    It refreshes every ``interval`` seconds on the notebook's background loop (``start()`` /
    ``stop()``; started at once unless ``autostart=False``), never blocking the kernel. The
    table's data is the ``rows`` trait.

    >>> RunsMonitor(client, "ExecutionStatus = 'Running'")          # doctest: +SKIP
    """

    query = traitlets.Unicode("", help="Visibility query; '' for every run.")
    limit = traitlets.Int(50, help="At most this many runs (the newest).")
    rows: traitlets.List[dict[str, Any]] = traitlets.List(help="One dict per run (keys: status, type, id, run_id, started, "
                               "duration, activity).")

    def __init__(self, client: temporalio.client.Client, query: str | None = None, *,
                 interval: float = 2.0, limit: int = 50, autostart: bool = True) -> None:
        self.client = client
        self._title = widgets.HTML()
        self._table = widgets.HTML()
        super().__init__(children=[self._title, self._table])
        self.query = query or ""
        self.limit = limit
        self.interval = interval
        self._render()
        if autostart:
            self.start()

    async def _fetch(self) -> Mapping[str, Any]:
        runs = await run_rows(self.client, self.query or None, limit=self.limit)
        running = [r for r in runs if r["status"] == "RUNNING"]
        activities = await asyncio.gather(*(self._current_activity(r) for r in running))
        current = {r["run_id"]: a for r, a in zip(running, activities, strict=True)}
        return {"rows": [{
            "status": r["status"],
            "type": r["type"],
            "id": r["id"],
            "run_id": r["run_id"],
            "started": r["start"],
            "duration": r["duration"],
            "activity": current.get(r["run_id"], ""),
        } for r in runs]}

    async def _current_activity(self, row: Mapping[str, Any]) -> str:
        handle = self.client.get_workflow_handle(row["id"], run_id=row["run_id"])
        try:
            described = await handle.describe()
        except Exception:
            return ""  # the run closed meanwhile
        pending = described.raw_description.pending_activities
        return ", ".join(p.activity_type.name + (f" (attempt {p.attempt})" if p.attempt > 1
                                                 else "") for p in pending)

    @traitlets.observe("rows", "error", "query")
    def _render(self, change: Any = None) -> None:
        what = self.query or "all runs"
        now = datetime.now(timezone.utc).astimezone().strftime("%H:%M:%S")
        note = f" <span style='color:#c00'>{html.escape(self.error)}</span>" if self.error else ""
        self._title.value = (f"<b>Runs</b>: {html.escape(what)} — {len(self.rows)} shown, "
                             f"{now}{note}")
        self._table.value = html_table(self.rows, COLUMNS, empty="no runs")
