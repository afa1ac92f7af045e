"""A replay as a DataFrame: each recorded event beside what the current code does (DESIGN §5).

After a ``%%workflow`` cell changed, :func:`replay_frame` shows whether a recorded run still
replays under the new code, and if not, the first event where they part ways: exactly where
temporalio's ``Replayer`` (and so a worker picking the run up) would raise
``NondeterminismError``.
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import temporalio.client
import temporalio.converter
import temporalio.workflow

from dbosify._runtime._replay import ReplayReport, replay_history
from dbosify.notebook._frames import HistorySource, client_of, load_history
from dbosify.notebook._loop import run_sync

if TYPE_CHECKING:
    import pandas as pd

REPLAY_COLUMNS = ("event_id", "event_type", "name", "recorded", "command", "status",
                  "diverged", "note")
"""Columns of :func:`replay_frame`."""

Workflows = type | Mapping[str, type] | Iterable[type]


def replay_report(
    client_or_history: temporalio.client.Client | HistorySource,
    workflow_id: str | None = None,
    workflows: Workflows | None = None,
    *,
    run_id: str | None = None,
    data_converter: temporalio.converter.DataConverter | None = None,
) -> ReplayReport:
    """The replay behind :func:`replay_frame` (rows as :class:`dbosify._runtime._replay.ReplayRow`)."""
    if isinstance(client_or_history, temporalio.client.Client):
        if not workflow_id:
            raise ValueError("replaying a run from a client needs its workflow_id: "
                             "replay_frame(client, 'my-workflow-id')")
        client = client_or_history
        source: HistorySource = client.get_workflow_handle(workflow_id, run_id=run_id)
        converter: temporalio.converter.DataConverter | None = (
            data_converter or client.data_converter)
    else:
        source = client_or_history
        converter = data_converter or (
            client_of(source).data_converter
            if isinstance(source, temporalio.client.WorkflowHandle) else None)
    history, converter = load_history(source, converter)
    if not history.events or not history.events[0].HasField(
            "workflow_execution_started_event_attributes"):
        raise ValueError("the history does not start with WORKFLOW_EXECUTION_STARTED: pass a "
                         "whole run's history")
    workflow_type = history.events[0].workflow_execution_started_event_attributes \
        .workflow_type.name
    cls = workflow_class(workflow_type, workflows)
    return run_sync(replay_history(history.events, cls, workflow_id=history.workflow_id,
                                   data_converter=converter))


def replay_frame(
    client_or_history: temporalio.client.Client | HistorySource,
    workflow_id: str | None = None,
    workflows: Workflows | None = None,
    *,
    run_id: str | None = None,
    data_converter: temporalio.converter.DataConverter | None = None,
) -> pd.DataFrame:
    """Replay a recorded run with the current code, one row per event.

    ``client_or_history`` is a client (then ``workflow_id``, and optionally ``run_id``, name the
    run), a workflow handle, or a history (``WorkflowHistory``, its saved JSON or file path).
    The code is the workflow type's class among ``workflows`` (a class, a list of classes or a
    mapping of type name to class), else the latest definition of a ``%%workflow`` cell in this
    notebook.

    Columns: ``event_id``, ``event_type``, ``name``, ``recorded`` (the command the history
    recorded), ``command`` (the command the code gives at that point, or the job fed to it),
    ``status`` (``match``, ``input``, ``diverged``, ``skipped``, ``not replayed``, ``new``),
    ``diverged`` (True on the first divergence only), ``note``. A command the code gives with
    no recorded event has no ``event_id``. ``frame.attrs["diverged_at"]`` is the first
    diverging row's position (``None`` if the run replays), and the frame's HTML highlights it.

    >>> replay_frame(client, "c1", workflows=[Counter])                  # doctest: +SKIP
    """
    import pandas as pd

    report = replay_report(client_or_history, workflow_id, workflows, run_id=run_id,
                           data_converter=data_converter)
    rows = [row.as_dict() for row in report.rows]
    frame = _frame_class()([[row[c] for c in REPLAY_COLUMNS] for row in rows],
                           columns=list(REPLAY_COLUMNS))
    frame["event_id"] = frame["event_id"].astype("Int64")
    frame["diverged"] = frame["diverged"].astype(bool)
    position = next((i for i, row in enumerate(rows) if row["diverged"]), None)
    frame.attrs["diverged_at"] = position
    frame.attrs["workflow_type"] = report.workflow_type
    assert isinstance(frame, pd.DataFrame)
    return frame


def workflow_class(workflow_type: str, workflows: Workflows | None) -> type:
    """The class that is "the current code" of ``workflow_type``."""
    if workflows is None:
        found = _notebook_definition(workflow_type)
        if found is None:
            raise LookupError(
                f"no definition of workflow type {workflow_type!r} in this notebook: run its "
                "%%workflow cell, or pass workflows=[TheClass]")
        return found
    if isinstance(workflows, type):
        candidates: list[type] = [workflows]
    elif isinstance(workflows, Mapping):
        if workflow_type in workflows:
            return workflows[workflow_type]
        candidates = list(workflows.values())
    else:
        candidates = list(workflows)
    for cls in candidates:
        defn = temporalio.workflow._Definition.from_class(cls)
        if defn is None:
            raise TypeError(f"{cls!r} is not a @workflow.defn class")
        if defn.name == workflow_type:
            return cls
    names = sorted(
        getattr(temporalio.workflow._Definition.from_class(c), "name", None) or "?"
        for c in candidates)
    raise LookupError(f"the run's workflow type is {workflow_type!r}, but the workflows given "
                      f"define {names}: pass the class of {workflow_type!r}")


def _notebook_definition(workflow_type: str) -> type | None:
    # The notebook session is optional here (replays of saved histories need none), so it is
    # looked up, not imported: no session, no definitions.
    try:
        session_module = importlib.import_module("dbosify.notebook._session")
    except ImportError:
        return None
    session = getattr(session_module, "_session", None)
    if session is None or getattr(session, "closed", False):
        return None
    found: type | None = session.workflow_class(workflow_type)
    return found


@cache
def _frame_class() -> Any:
    import pandas as pd

    class ReplayFrame(pd.DataFrame):  # type: ignore[misc]
        """A DataFrame whose HTML highlights the first divergence."""

        @property
        def _constructor(self) -> Any:
            # Anything derived from the frame (a slice, a filter) is a plain DataFrame.
            return pd.DataFrame

        def _repr_html_(self) -> str | None:
            if not {"diverged", "status"} <= set(self.columns):
                return super()._repr_html_()  # type: ignore[no-any-return]
            return replay_html(self)

    return ReplayFrame


def replay_html(frame: pd.DataFrame) -> str:
    """An HTML table of a replay frame, the first divergence highlighted (no jinja2 needed)."""
    import pandas as pd

    def cell(value: Any) -> str:
        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return ""
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        style = ("background-color:#fdd;font-weight:bold" if bool(row["diverged"])
                 else "color:#999" if row["status"] == "not replayed" else "")
        cells = "".join(f"<td>{cell(v)}</td>" for v in row.tolist())
        body.append(f'<tr style="{style}">{cells}</tr>' if style else f"<tr>{cells}</tr>")
    return ('<table class="dataframe dbosify-replay" border="1">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
