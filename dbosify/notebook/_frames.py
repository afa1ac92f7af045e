"""Histories and run lists as pandas DataFrames (DESIGN §5).

The rows come from :mod:`dbosify.history`'s pandas-free row functions; this module only turns
them into frames with proper dtypes (tz-aware times, ``Timedelta`` durations). pandas is imported
inside the functions, so importing :mod:`dbosify.notebook` never needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import temporalio.client
import temporalio.converter
from temporalio.api.history.v1 import HistoryEvent

from dbosify.history import HISTORY_COLUMNS, RUN_COLUMNS, history_rows, run_rows
from dbosify.notebook._loop import run_sync

if TYPE_CHECKING:
    import pandas as pd

HistorySource: TypeAlias = (
    "temporalio.client.WorkflowHistory | temporalio.client.WorkflowHandle[Any, Any] "
    "| Sequence[HistoryEvent] | str | os.PathLike[str] | Mapping[str, Any]"
)
"""What the notebook functions accept as a run's history: temporalio's ``WorkflowHistory``, a
workflow handle (its history is fetched), a list of ``HistoryEvent``\\ s, or a history saved with
``WorkflowHistory.to_json()`` (its JSON text, the parsed dict, or the path of the file)."""


def client_of(handle: temporalio.client.WorkflowHandle[Any, Any]) -> temporalio.client.Client:
    """The client a handle was made by (temporalio keeps it private, with no accessor)."""
    client: temporalio.client.Client = handle._client
    return client


def load_history(
    source: HistorySource,
    data_converter: temporalio.converter.DataConverter | None = None,
) -> tuple[temporalio.client.WorkflowHistory, temporalio.converter.DataConverter]:
    """``source`` as temporalio's ``WorkflowHistory``, with the converter to decode it with:
    ``data_converter`` if given, else a handle's client's, else temporalio's default."""
    if isinstance(source, temporalio.client.WorkflowHandle):
        converter = data_converter or client_of(source).data_converter
        return run_sync(source.fetch_history()), converter
    converter = data_converter or temporalio.converter.DataConverter.default
    if isinstance(source, temporalio.client.WorkflowHistory):
        return source, converter
    if isinstance(source, os.PathLike) or (
            isinstance(source, str) and not source.lstrip().startswith("{")):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"no history file at {str(path)!r}: pass a WorkflowHistory, a workflow handle, "
                "or the path or JSON text of a history saved with WorkflowHistory.to_json()")
        source = path.read_text(encoding="utf-8")
    if isinstance(source, (str, Mapping)):
        data: Any = json.loads(source) if isinstance(source, str) else dict(source)
        history = temporalio.client.WorkflowHistory.from_json("", data)
        workflow_id = ""
        if history.events and history.events[0].HasField(
                "workflow_execution_started_event_attributes"):
            workflow_id = history.events[0].workflow_execution_started_event_attributes.workflow_id
        return temporalio.client.WorkflowHistory(workflow_id, history.events), converter
    if isinstance(source, Iterable):
        events = list(source)
        if not all(isinstance(e, HistoryEvent) for e in events):
            raise TypeError("a history given as a list must hold temporalio HistoryEvent protos")
        workflow_id = ""
        if events and events[0].HasField("workflow_execution_started_event_attributes"):
            workflow_id = events[0].workflow_execution_started_event_attributes.workflow_id
        return temporalio.client.WorkflowHistory(workflow_id, events), converter
    raise TypeError(
        f"cannot read a history from {type(source).__name__}: pass a WorkflowHistory, a "
        "workflow handle, a list of HistoryEvents, or a saved history's JSON text or path")


def history_frame(
    history_or_handle: HistorySource,
    data_converter: temporalio.converter.DataConverter | None = None,
) -> pd.DataFrame:
    """A run's history, one row per event (see :func:`dbosify.history.history_rows`).

    Columns: ``event_id``, ``time`` (tz-aware UTC), ``event_type`` (e.g.
    ``ACTIVITY_TASK_COMPLETED``), ``name``, ``attempt``, ``input``, ``result``, ``failure``,
    ``duration`` (``Timedelta``, scheduled to closed), ``identity``. Payloads are decoded with
    ``data_converter``, else the handle's client's converter.

    >>> df = history_frame(handle)                                   # doctest: +SKIP
    >>> df[df.event_type == "ACTIVITY_TASK_COMPLETED"][["name", "result", "duration"]]
    ... # doctest: +SKIP
    """
    history, converter = load_history(history_or_handle, data_converter)
    rows = run_sync(history_rows(history, converter))
    return _frame(rows, HISTORY_COLUMNS, times=("time",), durations=("duration",),
                  ints=("event_id", "attempt"))


def runs_frame(client: temporalio.client.Client, query: str | None = None, *,
               limit: int | None = None) -> pd.DataFrame:
    """The runs matching a visibility ``query`` (all without one), newest first.

    Columns: ``status``, ``type``, ``id``, ``run_id``, ``version`` (the build id the run is
    pinned to, ``None`` when unversioned), ``start``, ``close`` (tz-aware UTC), ``duration``
    (``Timedelta``; so far, for an open run), ``task_queue``.

    >>> runs_frame(client, "ExecutionStatus = 'Running'")              # doctest: +SKIP
    """
    rows = run_sync(run_rows(client, query, limit=limit))
    return _frame(rows, RUN_COLUMNS, times=("start", "close"), durations=("duration",))


def _frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
           times: Sequence[str] = (), durations: Sequence[str] = (),
           ints: Sequence[str] = ()) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame([[row.get(c) for c in columns] for row in rows], columns=list(columns))
    for column in times:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in durations:
        frame[column] = pd.to_timedelta(frame[column])
    for column in ints:
        frame[column] = frame[column].astype("Int64")
    return frame
