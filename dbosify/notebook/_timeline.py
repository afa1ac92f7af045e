"""A picture of a run: activities, timers, children, signals and updates on a time axis.

In the spirit of Temporal UI's timeline: one lane per activity (waiting from scheduled to
started, running from started to closed, coloured by outcome, with its attempt count), per
timer and per child workflow, and markers for signals, updates and cancel requests. Drawn as
inline SVG with no dependency beyond the standard library; every string in it is escaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import temporalio.converter
from temporalio.api.history.v1 import HistoryEvent

from dbosify.history._rows import event_time, event_type_name, linked_event_id, own_name
from dbosify.notebook._frames import HistorySource, load_history

COLORS = {
    "waiting": "#d9d9d9",
    "running": "#4e79a7",
    "completed": "#59a14f",
    "failed": "#e15759",
    "timed_out": "#f28e2b",
    "canceled": "#9c9c9c",
    "terminated": "#b07aa1",
    "continued_as_new": "#76b7b2",
    "timer": "#b07aa1",
    "fired": "#b07aa1",
    "signal": "#edc948",
    "update": "#76b7b2",
    "cancel_request": "#e15759",
    "task": "#bab0ac",
}
"""Fill colours by state or marker kind."""

_CLOSE_STATES = {
    "COMPLETED": "completed", "FAILED": "failed", "TIMED_OUT": "timed_out",
    "CANCELED": "canceled", "TERMINATED": "terminated", "CONTINUED_AS_NEW": "continued_as_new",
    "FIRED": "fired",
}


@dataclass
class Segment:
    """A stretch of a lane: ``state`` from ``start`` to ``end`` (``None``: still going)."""

    start: datetime
    end: datetime | None
    state: str
    title: str


@dataclass
class Marker:
    """A point event on a lane (a signal, an update, a cancel request)."""

    time: datetime
    kind: str
    label: str
    title: str


@dataclass
class Lane:
    """One row of the picture."""

    label: str
    kind: str
    segments: list[Segment] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    attempts: int = 1


class Timeline:
    """A run's timeline; displays as SVG in a notebook (``_repr_svg_`` / ``_repr_html_``).

    ``lanes`` holds what is drawn; :attr:`svg` the drawing itself.
    """

    width = 960
    label_width = 230
    lane_height = 24
    top = 34

    def __init__(self, workflow_id: str, lanes: list[Lane], start: datetime,
                 end: datetime) -> None:
        self.workflow_id = workflow_id
        self.lanes = lanes
        self.start = start
        self.end = max(end, start + timedelta(milliseconds=1))

    def lane(self, label: str) -> Lane:
        """The lane labelled ``label`` (``KeyError`` if none)."""
        for lane in self.lanes:
            if lane.label == label:
                return lane
        raise KeyError(label)

    def _x(self, when: datetime) -> float:
        span = (self.end - self.start).total_seconds()
        plot = self.width - self.label_width - 30
        return self.label_width + plot * (when - self.start).total_seconds() / span

    @property
    def svg(self) -> str:
        """The picture as a standalone SVG document fragment."""
        e = _escape
        height = self.top + self.lane_height * len(self.lanes) + 10
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{height}" '
            f'font-family="sans-serif" font-size="11" class="dbosify-timeline">',
            f"<title>{e(f'timeline of {self.workflow_id}')}</title>",
        ]
        out.extend(self._axis(height))
        for index, lane in enumerate(self.lanes):
            y = self.top + index * self.lane_height
            if index % 2:
                out.append(f'<rect x="0" y="{y}" width="{self.width}" '
                           f'height="{self.lane_height}" fill="#f7f7f7"/>')
            label = lane.label if lane.attempts <= 1 else f"{lane.label} (attempt {lane.attempts})"
            out.append(f'<text x="6" y="{y + 16}" fill="#333">{e(_clip(label, 36))}'
                       f"<title>{e(label)}</title></text>")
            for seg in lane.segments:
                x0 = self._x(seg.start)
                x1 = self._x(seg.end or self.end)
                color = COLORS.get(seg.state, COLORS["running"])
                dash = ' stroke="#333" stroke-dasharray="3,2"' if seg.end is None else ""
                out.append(
                    f'<rect x="{x0:.1f}" y="{y + 5}" width="{max(x1 - x0, 2):.1f}" '
                    f'height="{self.lane_height - 10}" rx="2" fill="{color}"{dash} '
                    f'class="{e(seg.state)}"><title>{e(seg.title)}</title></rect>')
            for marker in lane.markers:
                x = self._x(marker.time)
                cy = y + self.lane_height / 2
                color = COLORS.get(marker.kind, "#333")
                if marker.kind == "task":
                    out.append(f'<line x1="{x:.1f}" y1="{y + 3}" x2="{x:.1f}" '
                               f'y2="{y + self.lane_height - 3}" stroke="#333" '
                               f'class="task"><title>{e(marker.title)}</title></line>')
                    continue
                out.append(
                    f'<path d="M{x:.1f},{cy - 7:.1f} L{x + 6:.1f},{cy:.1f} L{x:.1f},{cy + 7:.1f} '
                    f'L{x - 6:.1f},{cy:.1f} Z" fill="{color}" stroke="#333" '
                    f'class="{e(marker.kind)}"><title>{e(marker.title)}</title></path>')
                # Near the right edge the label goes on the marker's left.
                right = x > self.width - 120
                anchor = ' text-anchor="end"' if right else ""
                out.append(f'<text x="{x - 8 if right else x + 8:.1f}" y="{cy + 4:.1f}" '
                           f'fill="#333"{anchor}>{e(_clip(marker.label, 24))}</text>')
        out.append("</svg>")
        return "".join(out)

    def _axis(self, height: int) -> list[str]:
        span = (self.end - self.start).total_seconds()
        out = [f'<text x="6" y="14" fill="#333" font-weight="bold">'
               f"{_escape(_clip(self.workflow_id, 36))}</text>",
               f'<text x="{self.label_width}" y="14" fill="#666">'
               f"{_escape(self.start.isoformat(timespec='milliseconds'))}</text>"]
        for i in range(6):
            offset = span * i / 5
            x = self._x(self.start + timedelta(seconds=offset))
            out.append(f'<line x1="{x:.1f}" y1="{self.top - 6}" x2="{x:.1f}" y2="{height - 6}" '
                       f'stroke="#e0e0e0"/>')
            out.append(f'<text x="{x:.1f}" y="{self.top - 9}" fill="#666" text-anchor="middle">'
                       f"{_escape(_seconds(offset))}</text>")
        return out

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return f'<div style="overflow-x:auto">{self.svg}</div>'

    def __repr__(self) -> str:
        return f"<Timeline of {self.workflow_id!r}: {len(self.lanes)} lanes>"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _seconds(offset: float) -> str:
    if offset >= 120:
        return f"+{offset / 60:.1f} min"
    if offset >= 1:
        return f"+{offset:.1f} s"
    return f"+{offset * 1000:.0f} ms"


def timeline(history_or_handle: HistorySource,
             data_converter: temporalio.converter.DataConverter | None = None) -> Timeline:
    """The timeline of a run (a handle, a ``WorkflowHistory`` or a saved history).

    >>> timeline(handle)                          # doctest: +SKIP   (shows the picture)
    """
    history, _ = load_history(history_or_handle, data_converter)
    return build_timeline(history.workflow_id, list(history.events))


def build_timeline(workflow_id: str, events: list[HistoryEvent]) -> Timeline:
    """The lanes of a run's picture, from its events."""
    if not events:
        raise ValueError("an empty history has no timeline")
    start = event_time(events[0])
    end = event_time(events[-1])
    workflow = Lane(f"workflow {own_name(events[0]) or ''}".strip(), "workflow")
    messages = Lane("signals & updates", "messages")
    lanes: list[Lane] = [workflow]
    opened: dict[int, Lane] = {}  # scheduled/started/initiated event id -> its lane

    def open_lane(opening: HistoryEvent, label: str, kind: str, state: str,
                  happened: str) -> None:
        # The event that opens a lane (scheduled, started, initiated) is the one its later
        # events link back to.
        lane = Lane(label, kind)
        lane.segments.append(Segment(event_time(opening), None, state, f"{label}: {happened}"))
        opened[opening.event_id] = lane
        lanes.append(lane)
    names: dict[int, str] = {}
    workflow_closed = False
    for event in events:
        kind = event_type_name(event)
        when = event_time(event)
        link = linked_event_id(event)
        attrs: Any = getattr(event, event.WhichOneof("attributes") or "", None)
        if kind == "ACTIVITY_TASK_SCHEDULED":
            open_lane(event, f"{attrs.activity_type.name} #{attrs.activity_id}", "activity",
                      "waiting", "scheduled")
        elif kind == "ACTIVITY_TASK_STARTED" and link in opened:
            lane = opened[link]
            lane.attempts = max(attrs.attempt, 1)
            lane.segments[-1].end = when
            title = f"{lane.label}: started (attempt {attrs.attempt})"
            if attrs.HasField("last_failure"):
                title += f"; previous attempt failed: {attrs.last_failure.message}"
            lane.segments.append(Segment(when, None, "running", title))
        elif kind.startswith("ACTIVITY_TASK_") and link in opened and kind.split(
                "ACTIVITY_TASK_")[1] in _CLOSE_STATES:
            _close(opened[link], when, _CLOSE_STATES[kind.split("ACTIVITY_TASK_")[1]],
                   _failure_text(attrs))
        elif kind == "ACTIVITY_TASK_CANCEL_REQUESTED" and link in opened:
            opened[link].markers.append(Marker(when, "cancel_request", "cancel",
                                               "cancel requested"))
        elif kind == "TIMER_STARTED":
            open_lane(event,
                      f"timer {attrs.timer_id} ({attrs.start_to_fire_timeout.ToTimedelta()})",
                      "timer", "timer", "started")
        elif kind in ("TIMER_FIRED", "TIMER_CANCELED") and link in opened:
            _close(opened[link], when, "fired" if kind == "TIMER_FIRED" else "canceled", "")
        elif kind == "START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            open_lane(event, f"child {attrs.workflow_type.name} {attrs.workflow_id}", "child",
                      "waiting", "initiated")
        elif kind == "CHILD_WORKFLOW_EXECUTION_STARTED" and link in opened:
            opened[link].segments[-1].end = when
            opened[link].segments.append(Segment(when, None, "running",
                                                 f"{opened[link].label}: started"))
        elif kind.startswith("CHILD_WORKFLOW_EXECUTION_") and link in opened:
            state = _CLOSE_STATES.get(kind.split("CHILD_WORKFLOW_EXECUTION_")[1], "completed")
            _close(opened[link], when, state, _failure_text(attrs))
        elif kind == "START_CHILD_WORKFLOW_EXECUTION_FAILED" and link in opened:
            _close(opened[link], when, "failed", "child could not start")
        elif kind == "WORKFLOW_EXECUTION_SIGNALED":
            messages.markers.append(Marker(when, "signal", attrs.signal_name,
                                           f"signal {attrs.signal_name} from "
                                           f"{attrs.identity or 'unknown'}"))
        elif kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            name = attrs.accepted_request.input.name
            names[event.event_id] = name
            messages.markers.append(Marker(when, "update", name, f"update {name} accepted"))
        elif kind == "WORKFLOW_EXECUTION_UPDATE_COMPLETED":
            name = names.get(attrs.accepted_event_id, "update")
            outcome = "completed" if attrs.outcome.HasField("success") else "rejected"
            messages.markers.append(Marker(when, "update", f"{name} done",
                                           f"update {name} {outcome}"))
        elif kind == "WORKFLOW_EXECUTION_CANCEL_REQUESTED":
            messages.markers.append(Marker(when, "cancel_request", "cancel",
                                           f"cancel requested {attrs.cause}".strip()))
        elif kind in ("WORKFLOW_TASK_COMPLETED", "WORKFLOW_TASK_FAILED"):
            workflow.markers.append(Marker(when, "task", "", kind.lower().replace("_", " ")))
        elif kind.startswith("WORKFLOW_EXECUTION_") and kind.split(
                "WORKFLOW_EXECUTION_")[1] in _CLOSE_STATES:
            state = _CLOSE_STATES[kind.split("WORKFLOW_EXECUTION_")[1]]
            workflow.segments.append(Segment(start, when, state,
                                             f"workflow {state.replace('_', ' ')}"
                                             f"{_failure_text(attrs)}"))
            workflow_closed = True
    if not workflow_closed:
        workflow.segments.append(Segment(start, None, "running", "workflow running"))
    # Task ticks are many and say little on their own: drop them from long histories.
    if len(workflow.markers) > 40:
        workflow.markers.clear()
    for marker in workflow.markers:
        marker.label = ""
    if messages.markers:
        lanes.insert(1, messages)
    return Timeline(workflow_id, lanes, start, end)


def _close(lane: Lane, when: datetime, state: str, detail: str) -> None:
    if lane.segments and lane.segments[-1].end is None:
        lane.segments[-1].end = when
        lane.segments[-1].state = state if lane.segments[-1].state in (
            "running", "timer") else lane.segments[-1].state
        lane.segments[-1].title += f" → {state.replace('_', ' ')}{detail}"
        if lane.segments[-1].state == "waiting":
            # Never started (timed out before start, cancelled while scheduled).
            lane.segments[-1].state = state


def _failure_text(attrs: Any) -> str:
    if attrs is None or "failure" not in attrs.DESCRIPTOR.fields_by_name:
        return ""
    if not attrs.HasField("failure"):
        return ""
    return f": {attrs.failure.message}"
