"""ProgressBar: how far a running workflow is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import temporalio.api.sdk.v1
import temporalio.client
import traitlets

from dbosify.history import event_type_name
from dbosify.widgets._refresh import Refreshing

_CLOSED = ("ACTIVITY_TASK_COMPLETED", "ACTIVITY_TASK_FAILED", "ACTIVITY_TASK_TIMED_OUT",
           "ACTIVITY_TASK_CANCELED")


class ProgressBar(Refreshing, widgets.HBox):  # type: ignore[misc]
    """A run's progress: activities done of those scheduled so far, and the text the workflow
    set with ``workflow.set_current_details()`` (shown instead of the count when set).

    Refreshes every ``interval`` seconds until the run closes (``start()`` / ``stop()``;
    started at once unless ``autostart=False``).

    >>> ProgressBar(handle)                                         # doctest: +SKIP
    """

    done = traitlets.Int(0, help="Activities that finished (completed, failed, ...).")
    scheduled = traitlets.Int(0, help="Activities scheduled so far.")
    details = traitlets.Unicode("", help="What workflow.set_current_details() last said.")
    status = traitlets.Unicode("", help="The run's status, e.g. RUNNING, COMPLETED.")
    text = traitlets.Unicode("", help="The line shown beside the bar.")

    def __init__(self, handle: temporalio.client.WorkflowHandle[Any, Any], *,
                 interval: float = 1.0, autostart: bool = True) -> None:
        self.handle = handle
        self._bar = widgets.IntProgress(value=0, min=0, max=1, description=handle.id[:20])
        self._label = widgets.Label()
        super().__init__(children=[self._bar, self._label])
        self.interval = interval
        if autostart:
            self.start()

    async def _fetch(self) -> Mapping[str, Any]:
        described = await self.handle.describe()
        history = await self.handle.fetch_history()
        kinds = [event_type_name(e) for e in history.events]
        status = described.status.name if described.status is not None else ""
        details = self.details
        if status == "RUNNING":
            try:
                metadata = await self.handle.query(
                    "__temporal_workflow_metadata",
                    result_type=temporalio.api.sdk.v1.WorkflowMetadata)
                details = metadata.current_details
            except Exception:
                pass  # no worker to answer right now: keep the last details
        return {"scheduled": kinds.count("ACTIVITY_TASK_SCHEDULED"),
                "done": sum(kinds.count(k) for k in _CLOSED),
                "status": status, "details": details}

    def _finished(self) -> bool:
        return self.status not in ("", "RUNNING")

    @traitlets.observe("done", "scheduled", "details", "status")
    def _render(self, change: Any = None) -> None:
        self._bar.max = max(self.scheduled, 1)
        self._bar.value = self.done
        self._bar.bar_style = {"COMPLETED": "success", "FAILED": "danger",
                               "TERMINATED": "danger", "TIMED_OUT": "danger",
                               "CANCELED": "warning"}.get(self.status, "info")
        count = f"{self.done}/{self.scheduled} activities"
        self.text = f"{self.details} ({count})" if self.details else count
        if self.status and self.status != "RUNNING":
            self.text += f" — {self.status.lower()}"
        self._label.value = self.text
