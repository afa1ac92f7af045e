"""A workflow handle that displays well in a notebook."""

from __future__ import annotations

import html
from typing import Any

import temporalio.client

from dbosify.notebook._loop import run_sync


class RunHandle(temporalio.client.WorkflowHandle[Any, Any]):
    """temporalio's ``WorkflowHandle``, shown as a small table in a notebook.

    Everything is temporalio's: ``await h.result()`` (on the kernel's own loop too),
    ``await h.signal(...)``, ``await h.describe()``. :meth:`wait` is the blocking form of
    ``result()`` for plain code; an interrupt stops the wait, not the run.
    """

    @classmethod
    def of(cls, handle: temporalio.client.WorkflowHandle[Any, Any]) -> RunHandle:
        """The same handle, as a :class:`RunHandle`."""
        return cls(handle._client, handle.id, run_id=handle.run_id,
                   result_run_id=handle.result_run_id,
                   first_execution_run_id=handle.first_execution_run_id,
                   result_type=handle._result_type)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the workflow's result (``timeout`` seconds at most) and return it."""
        return run_sync(self.result(), timeout)

    def _describe_now(self) -> dict[str, str]:
        info = {"workflow id": self.id, "run id": self.result_run_id or self.run_id or ""}
        try:
            desc = run_sync(self.describe(), 5.0)
        except BaseException:  # A display must never fail; the ids are enough.
            return info
        raw = desc.raw_description.workflow_execution_info
        info.update({"run id": desc.run_id, "type": desc.workflow_type,
                     "task queue": desc.task_queue or "",
                     "status": desc.status.name if desc.status is not None else "",
                     "version": raw.assigned_build_id or "(unversioned)"})
        return info

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
                       for k, v in self._describe_now().items())
        return f"<table class='dbosify-run'>{rows}</table>"

    def __repr__(self) -> str:
        return f"<RunHandle workflow id={self.id!r} run id={self.result_run_id or self.run_id!r}>"
