"""Histories and run lists as plain rows: one dict per event or run, values decoded.

These are the row data behind ``dbosify.notebook.history_frame`` / ``runs_frame`` and anything
else that shows runs as a table (the CLI): no pandas here. Payloads are decoded with a
``DataConverter`` (the client's, so a codec the team's workers use applies), which is async in
temporalio: the ``*_rows`` functions are coroutines, the ``*_rows_sync`` ones wrap them for plain
code.

>>> rows = history_rows_sync(await handle.fetch_history())   # doctest: +SKIP
>>> rows[4]["event_type"], rows[4]["name"], rows[4]["result"]  # doctest: +SKIP
('ACTIVITY_TASK_COMPLETED', 'add_one', 2)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import temporalio.converter
import temporalio.exceptions
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import WorkflowExecutionInfo

from dbosify.history._events import PATCH_MARKER_DETAILS_KEY, PATCH_MARKER_NAME

if TYPE_CHECKING:
    import temporalio.client

T = TypeVar("T")

HISTORY_COLUMNS = (
    "event_id", "time", "event_type", "name", "attempt", "input", "result", "failure",
    "duration", "identity",
)
"""Keys of a history row, in display order."""

RUN_COLUMNS = (
    "status", "type", "id", "run_id", "version", "start", "close", "duration", "task_queue",
)
"""Keys of a run row, in display order."""

_PREFIX = "EVENT_TYPE_"

# Fields by which an event names the event that opened what it reports on, most specific
# first: a completed activity points at its scheduled event, a fired timer at its started one.
_LINK_FIELDS = ("scheduled_event_id", "initiated_event_id", "accepted_event_id",
                "started_event_id")

# Events that close what another event opened: their duration is opener -> this event.
_CLOSING_SUFFIXES = ("_COMPLETED", "_FAILED", "_TIMED_OUT", "_CANCELED", "_TERMINATED",
                     "_CONTINUED_AS_NEW", "_FIRED", "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED",
                     "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED")


def event_type_name(event: HistoryEvent) -> str:
    """Temporal's name of the event's type without its prefix, e.g. ``ACTIVITY_TASK_COMPLETED``."""
    name = EventType.Name(event.event_type) if event.event_type in EventType.values() else (
        f"EVENT_TYPE_{event.event_type}")
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def event_time(event: HistoryEvent) -> datetime:
    """When the event happened, as a UTC-aware datetime."""
    return event.event_time.ToDatetime(tzinfo=timezone.utc)


def event_attributes(event: HistoryEvent) -> Message | None:
    """The event's attributes message (whichever of the oneof is set)."""
    field = event.WhichOneof("attributes")
    return getattr(event, field) if field is not None else None


def linked_event_id(event: HistoryEvent) -> int | None:
    """The id of the event that opened what ``event`` reports on (its scheduled, initiated,
    accepted or started event), if it names one."""
    attrs = event_attributes(event)
    if attrs is None:
        return None
    fields = attrs.DESCRIPTOR.fields_by_name
    for name in _LINK_FIELDS:
        if name in fields:
            value = int(getattr(attrs, name))
            if value:
                return value
    return None


def is_closing(event_type: str) -> bool:
    """Whether an event of this type (prefix-less name) closes something another event opened."""
    return event_type.endswith(_CLOSING_SUFFIXES)


def patch_id(event: HistoryEvent) -> str | None:
    """The patch id of a ``workflow.patched()`` marker (Core's ``core_patch``), else ``None``."""
    if not event.HasField("marker_recorded_event_attributes"):
        return None
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != PATCH_MARKER_NAME:
        return None
    details = marker.details.get(PATCH_MARKER_DETAILS_KEY)
    if details is None or not details.payloads:
        return None
    try:
        data = json.loads(details.payloads[0].data)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def own_name(event: HistoryEvent) -> str | None:
    """The name an event carries itself: the activity type, timer id, signal, update, marker,
    child or workflow type; ``None`` for an event that only points at another one."""
    field = event.WhichOneof("attributes")
    if field is None:
        return None
    attrs: Any = getattr(event, field)
    if field == "marker_recorded_event_attributes":
        return patch_id(event) or attrs.marker_name
    if field == "workflow_execution_update_accepted_event_attributes":
        return str(attrs.accepted_request.input.name) or None
    if field == "workflow_execution_update_admitted_event_attributes":
        return str(attrs.request.input.name) or None
    if field == "request_cancel_external_workflow_execution_initiated_event_attributes":
        return str(attrs.workflow_execution.workflow_id) or None
    fields = attrs.DESCRIPTOR.fields_by_name
    for name in ("activity_type", "workflow_type"):
        if name in fields and attrs.HasField(name):
            return str(getattr(attrs, name).name) or None
    for name in ("timer_id", "signal_name"):
        if name in fields:
            return str(getattr(attrs, name)) or None
    return None


# -- decoding ---------------------------------------------------------------------------------


async def _values(converter: temporalio.converter.DataConverter,
                  payloads: Sequence[Payload]) -> list[Any]:
    if not payloads:
        return []
    try:
        return await converter.decode(list(payloads))
    except Exception:
        # A payload this converter cannot read (another codec, an unknown class) is shown as
        # it is stored rather than failing the whole table.
        return list(payloads)


async def _single(converter: temporalio.converter.DataConverter,
                  payloads: Payloads | Sequence[Payload]) -> Any:
    items = list(payloads.payloads) if isinstance(payloads, Payloads) else list(payloads)
    values = await _values(converter, items)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


async def _failure(converter: temporalio.converter.DataConverter,
                   failure: Failure) -> BaseException | str:
    copy = Failure()
    copy.CopyFrom(failure)  # decode_failure decodes payloads in place
    try:
        return await converter.decode_failure(copy)
    except Exception:
        return failure.message


async def _decoded(converter: temporalio.converter.DataConverter, event: HistoryEvent,
                   event_type: str) -> tuple[Any, Any, Any]:
    """(input, result, failure) of one event."""
    field = event.WhichOneof("attributes")
    if field is None:
        return None, None, None
    attrs: Any = getattr(event, field)
    fields = attrs.DESCRIPTOR.fields_by_name
    inp: Any = None
    result: Any = None
    failure: Any = None
    if field == "workflow_execution_update_accepted_event_attributes":
        inp = await _values(converter, attrs.accepted_request.input.args.payloads)
    elif field == "workflow_execution_update_admitted_event_attributes":
        inp = await _values(converter, attrs.request.input.args.payloads)
    elif field == "workflow_execution_update_completed_event_attributes":
        outcome = attrs.outcome
        if outcome.HasField("success"):
            result = await _single(converter, outcome.success)
        elif outcome.HasField("failure"):
            failure = await _failure(converter, outcome.failure)
    elif field == "timer_started_event_attributes":
        inp = attrs.start_to_fire_timeout.ToTimedelta()
    elif field == "marker_recorded_event_attributes":
        inp = {key: await _single(converter, value) for key, value in attrs.details.items()}
        if attrs.HasField("failure"):
            failure = await _failure(converter, attrs.failure)
    elif field == "workflow_execution_cancel_requested_event_attributes":
        inp = attrs.cause or None
    elif field == "workflow_execution_terminated_event_attributes":
        details = await _values(converter, attrs.details.payloads)
        failure = temporalio.exceptions.TerminatedError(attrs.reason or "terminated", *details)
    elif field == "workflow_execution_timed_out_event_attributes":
        failure = temporalio.exceptions.TimeoutError(
            "workflow execution timed out", type=None, last_heartbeat_details=[])
    elif field in ("activity_task_canceled_event_attributes",
                   "workflow_execution_canceled_event_attributes",
                   "child_workflow_execution_canceled_event_attributes"):
        details = await _values(converter, attrs.details.payloads)
        failure = temporalio.exceptions.CancelledError("canceled", *details)
    elif field == "upsert_workflow_search_attributes_event_attributes":
        inp = temporalio.converter.decode_search_attributes(attrs.search_attributes)
    elif field == "workflow_properties_modified_event_attributes":
        inp = {key: await _single(converter, [value])
               for key, value in attrs.upserted_memo.fields.items()}
    else:
        if "input" in fields and attrs.HasField("input"):
            inp = await _values(converter, attrs.input.payloads)
        if "result" in fields and attrs.HasField("result"):
            result = await _single(converter, attrs.result)
        if field == "activity_task_started_event_attributes":
            # The previous attempt's failure, which Temporal carries on the started event.
            if attrs.HasField("last_failure"):
                failure = await _failure(converter, attrs.last_failure)
        elif "failure" in fields and attrs.HasField("failure"):
            failure = await _failure(converter, attrs.failure)
    return inp, result, failure


# -- history rows -----------------------------------------------------------------------------


def _events_of(history: temporalio.client.WorkflowHistory | Iterable[HistoryEvent]
               ) -> list[HistoryEvent]:
    events: Any = getattr(history, "events", history)
    result = list(events)
    for event in result:
        if not isinstance(event, HistoryEvent):
            raise TypeError(
                f"expected a temporalio WorkflowHistory or HistoryEvent protos, got "
                f"{type(event).__name__}; pass handle.fetch_history()'s result")
    return result


async def history_rows(
    history: temporalio.client.WorkflowHistory | Iterable[HistoryEvent],
    data_converter: temporalio.converter.DataConverter | None = None,
) -> list[dict[str, Any]]:
    """One row per event of ``history`` (keys: :data:`HISTORY_COLUMNS`).

    ``event_type`` is Temporal's name without ``EVENT_TYPE_``; ``name`` is the activity type,
    timer id, signal, update, patch or child workflow type, and for an event that reports on
    another one (completed, failed, fired, ...) the name of that one; ``attempt`` is the
    activity's or workflow task's attempt; ``input``/``result`` are decoded Python values
    (``input`` a list of arguments), ``failure`` a temporalio exception (a message if it cannot
    be decoded); ``duration`` is a ``timedelta`` from the opening event (scheduled, started,
    initiated, accepted) to the event that closes it; ``identity`` the worker or client.
    """
    converter = data_converter or temporalio.converter.DataConverter.default
    events = _events_of(history)
    names: dict[int, str | None] = {}
    times: dict[int, datetime] = {}
    attempts: dict[int, int] = {}
    started_of: dict[int, int] = {}  # activity scheduled id -> started event id
    rows: list[dict[str, Any]] = []
    first_time = event_time(events[0]) if events else None
    for event in events:
        kind = event_type_name(event)
        when = event_time(event)
        times[event.event_id] = when
        link = linked_event_id(event)
        name = own_name(event)
        if name is None and link is not None:
            name = names.get(link)
        names[event.event_id] = name
        attrs: Any = event_attributes(event)
        fields = attrs.DESCRIPTOR.fields_by_name if attrs is not None else {}
        attempt: int | None = None
        if "attempt" in fields and attrs.attempt:
            attempt = int(attrs.attempt)
            attempts[event.event_id] = attempt
        if kind == "ACTIVITY_TASK_STARTED" and link is not None:
            started_of[link] = event.event_id
        if attempt is None and link is not None:
            # A closing event shows the attempt that produced it.
            started = started_of.get(link) or (
                int(attrs.started_event_id) if "started_event_id" in fields else 0)
            attempt = attempts.get(started) or attempts.get(link)
        duration: timedelta | None = None
        if is_closing(kind):
            if kind.startswith("WORKFLOW_EXECUTION_") and first_time is not None:
                duration = when - first_time
            elif link is not None and link in times:
                duration = when - times[link]
        identity = str(attrs.identity) if "identity" in fields and attrs.identity else None
        if kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            identity = str(attrs.accepted_request.meta.identity) or None
        inp, result, failure = await _decoded(converter, event, kind)
        rows.append({
            "event_id": event.event_id,
            "time": when,
            "event_type": kind,
            "name": name,
            "attempt": attempt,
            "input": inp,
            "result": result,
            "failure": failure,
            "duration": duration,
            "identity": identity,
        })
    return rows


# -- run rows ---------------------------------------------------------------------------------


def run_version(info: WorkflowExecutionInfo) -> str | None:
    """The build id a run is pinned to, read as Temporal's worker versioning shows it.

    The deployment version of the run's versioning info (or of a pinned override), else the
    assigned build id, else the most recent worker version stamp; ``None`` for an unversioned
    run.
    """
    if info.HasField("versioning_info"):
        versioning = info.versioning_info
        if versioning.HasField("versioning_override"):
            override = versioning.versioning_override
            if override.HasField("pinned") and override.pinned.version.build_id:
                return str(override.pinned.version.build_id)
        if versioning.deployment_version.build_id:
            return str(versioning.deployment_version.build_id)
        if versioning.version:
            # Deprecated form "<deployment name>.<build id>".
            return str(versioning.version).rsplit(".", 1)[-1]
    if info.assigned_build_id:
        return str(info.assigned_build_id)
    if info.most_recent_worker_version_stamp.build_id:
        return str(info.most_recent_worker_version_stamp.build_id)
    return None


def run_row(execution: temporalio.client.WorkflowExecution,
            now: datetime | None = None) -> dict[str, Any]:
    """One row for a run listed by ``client.list_workflows()`` (keys: :data:`RUN_COLUMNS`).

    ``duration`` runs from the start to the close, or to ``now`` for a run still open.
    """
    close = execution.close_time
    end = close or (now or datetime.now(timezone.utc))
    return {
        "status": execution.status.name if execution.status is not None else None,
        "type": execution.workflow_type,
        "id": execution.id,
        "run_id": execution.run_id,
        "version": run_version(execution.raw_info),
        "start": execution.start_time,
        "close": close,
        "duration": end - execution.start_time,
        "task_queue": execution.task_queue,
    }


async def run_rows(client: temporalio.client.Client, query: str | None = None, *,
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Rows for the runs matching a visibility ``query`` (all runs without one), newest first.

    >>> await run_rows(client, "WorkflowType = 'Counter' AND ExecutionStatus = 'Running'")
    ... # doctest: +SKIP
    """
    now = datetime.now(timezone.utc)
    rows = [run_row(execution, now)
            async for execution in client.list_workflows(query or None, limit=limit)]
    rows.sort(key=lambda row: row["start"], reverse=True)
    return rows


# -- sync wrappers ----------------------------------------------------------------------------


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code.

    Without a running loop in this thread it runs on a fresh one; inside one (a notebook
    cell, async code calling sync code) it runs on a fresh loop in a helper thread, since the
    caller's loop cannot be re-entered.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dbosify-rows") as pool:
        return pool.submit(asyncio.run, coro).result()


def history_rows_sync(
    history: temporalio.client.WorkflowHistory | Iterable[HistoryEvent],
    data_converter: temporalio.converter.DataConverter | None = None,
) -> list[dict[str, Any]]:
    """:func:`history_rows` for synchronous code."""
    return run_coroutine(history_rows(history, data_converter))


def run_rows_sync(client: temporalio.client.Client, query: str | None = None, *,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """:func:`run_rows` for synchronous code."""
    return run_coroutine(run_rows(client, query, limit=limit))
