"""RunPanel: one run's history and the controls to signal, query, update, cancel, terminate."""

from __future__ import annotations

import ast
import html
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import ipywidgets as widgets
import temporalio.client
import traitlets

from dbosify.history import history_rows
from dbosify.notebook._frames import client_of
from dbosify.notebook._loop import run_sync
from dbosify.widgets._refresh import Refreshing, html_table

HISTORY_COLUMNS = ("event_id", "time", "event_type", "name", "result", "failure")
"""Columns of the panel's history table."""


def parse_args(text: str) -> list[Any]:
    """The arguments typed in the panel: Python literals separated by commas (``1, 'a',
    [2]``); text that is no literal is one string argument, nothing is no argument."""
    text = text.strip()
    if not text:
        return []
    try:
        value = ast.literal_eval(f"[{text}]")
    except (SyntaxError, ValueError):
        return [text]
    return list(value)


class RunPanel(Refreshing, widgets.VBox):  # type: ignore[misc]
    """A run's history table, with controls that signal, query, update, cancel or terminate it.

    Type a handler name and its arguments (Python literals, comma-separated), then press a
    button; the outcome shows below the buttons (the ``output`` trait; the value itself is
    ``result``). Each action calls the client on the notebook's background loop and the panel
    then re-reads the history. The methods (:meth:`signal`, :meth:`query`, ...) do the same
    from code.

    >>> RunPanel(handle)                                            # doctest: +SKIP
    """

    status = traitlets.Unicode("", help="The run's status, e.g. RUNNING.")
    rows: traitlets.List[dict[str, Any]] = traitlets.List(help="The history, one dict per event (see dbosify.history).")
    output = traitlets.Unicode("", help="What the last action did or answered.")
    result = traitlets.Any(None, help="The value the last query or update returned.")

    def __init__(self, handle: temporalio.client.WorkflowHandle[Any, Any], *,
                 interval: float = 2.0, autostart: bool = False,
                 timeout: float = 30.0) -> None:
        self.handle = handle
        self.timeout = timeout
        self.name_box = widgets.Text(placeholder="handler name", description="name")
        self.args_box = widgets.Text(placeholder="1, 'two'", description="args")
        self.reason_box = widgets.Text(placeholder="why", description="reason")
        self.buttons: dict[str, widgets.Button] = {}
        actions: dict[str, Callable[[], Any]] = {
            "signal": lambda: self.signal(),
            "query": lambda: self.query(),
            "update": lambda: self.update(),
            "cancel": self.cancel,
            "terminate": lambda: self.terminate(),
            "refresh": self.refresh,
        }
        for label, action in actions.items():
            button = widgets.Button(description=label,
                                    button_style="danger" if label == "terminate" else "")
            button.on_click(lambda _b, act=action: act())
            self.buttons[label] = button
        self._header = widgets.HTML()
        self._output = widgets.HTML()
        self._table = widgets.HTML()
        super().__init__(children=[
            self._header,
            widgets.HBox([self.name_box, self.args_box]),
            widgets.HBox([self.buttons[k] for k in ("signal", "query", "update", "refresh")]),
            widgets.HBox([self.reason_box, self.buttons["cancel"], self.buttons["terminate"]]),
            self._output,
            self._table,
        ])
        self.interval = interval
        self.refresh()
        if autostart:
            self.start()

    # -- reading -------------------------------------------------------------------------------

    async def _fetch(self) -> Mapping[str, Any]:
        described = await self.handle.describe()
        history = await self.handle.fetch_history()
        rows = await history_rows(history, client_of(self.handle).data_converter)
        return {"status": described.status.name if described.status is not None else "",
                "rows": rows}

    def _finished(self) -> bool:
        return self.status not in ("", "RUNNING")

    @traitlets.observe("rows", "status", "output", "error")
    def _render(self, change: Any = None) -> None:
        self._header.value = (f"<b>{html.escape(self.handle.id)}</b> "
                              f"<code>{html.escape(self.status)}</code>")
        shown = html.escape(self.error or self.output)
        color = "#c00" if self.error else "#333"
        self._output.value = f"<pre style='color:{color}'>{shown}</pre>" if shown else ""
        self._table.value = html_table(self.rows, HISTORY_COLUMNS, empty="no events")

    # -- actions -------------------------------------------------------------------------------

    def _act(self, what: str, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            value = run_sync(coro, self.timeout)
        except Exception as err:
            self.error = f"{what} failed: {type(err).__name__}: {err}"
            self.output = ""
            return None
        self.error = ""
        self.refresh()
        return value

    def _name_and_args(self, name: str | None, args: tuple[Any, ...]) -> tuple[str, list[Any]]:
        if name is None:
            name = self.name_box.value.strip()
            args = tuple(parse_args(self.args_box.value))
        if not name:
            raise ValueError("type the handler's name first")
        return name, list(args)

    def _named(self, what: str, name: str | None, args: tuple[Any, ...]
               ) -> tuple[str, list[Any]] | None:
        try:
            return self._name_and_args(name, args)
        except ValueError as err:
            self.error = f"{what}: {err}"
            return None

    def signal(self, name: str | None = None, *args: Any) -> None:
        """Send signal ``name`` (default: the name box) with ``args`` (default: the args box)."""
        named = self._named("signal", name, args)
        if named is None:
            return
        self._act("signal", self.handle.signal(named[0], args=named[1]))
        if not self.error:
            self.output = f"signal {named[0]} sent"

    def query(self, name: str | None = None, *args: Any) -> Any:
        """Ask query ``name``; returns (and shows) the answer."""
        named = self._named("query", name, args)
        if named is None:
            return None
        value = self._act("query", self.handle.query(named[0], args=named[1]))
        if not self.error:
            self.result, self.output = value, f"query {named[0]} → {value!r}"
        return value

    def update(self, name: str | None = None, *args: Any) -> Any:
        """Run update ``name``; returns (and shows) its result."""
        named = self._named("update", name, args)
        if named is None:
            return None
        value = self._act("update", self.handle.execute_update(named[0], args=named[1]))
        if not self.error:
            self.result, self.output = value, f"update {named[0]} → {value!r}"
        return value

    def cancel(self) -> None:
        """Request the run's cancellation."""
        self._act("cancel", self.handle.cancel())
        if not self.error:
            self.output = "cancel requested"

    def terminate(self, reason: str | None = None) -> None:
        """Terminate the run (``reason``: default the reason box)."""
        reason = reason if reason is not None else self.reason_box.value.strip()
        self._act("terminate", self.handle.terminate(reason=reason or None))
        if not self.error:
            self.output = "terminated" + (f": {reason}" if reason else "")
