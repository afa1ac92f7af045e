"""``dbosify schedule list|describe|pause|unpause|trigger|delete`` through temporalio's client."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import temporalio.client

from dbosify.cli import _common as c


def duration_text(value: timedelta) -> str:
    """``1d``, ``1h30m``, ``30s``: the way ``--every`` is written."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or f"{value.total_seconds():g}s"


def _spec_text(spec: temporalio.client.ScheduleSpec) -> str:
    parts = [f"cron {e}" for e in spec.cron_expressions]
    parts += [f"every {duration_text(i.every)}" for i in spec.intervals]
    parts += ["calendar" for _ in spec.calendars]
    return ", ".join(parts) or "-"


def _workflow_of(action: Any) -> str:
    return getattr(action, "workflow", "") or type(action).__name__


async def list_rows(database: str | None) -> list[dict[str, Any]]:
    """One row per schedule."""
    client = await c.connect(database)
    try:
        rows = []
        with c.rpc_errors():
            async for entry in await client.list_schedules():
                info = entry.info
                sched = entry.schedule
                rows.append({
                    "id": entry.id,
                    "workflow": _workflow_of(sched.action) if sched else "",
                    "spec": _spec_text(sched.spec) if sched else "",
                    "paused": "paused" if sched and sched.state.paused else "",
                    "next_run": info.next_action_times[0]
                    if info and info.next_action_times else None,
                    "note": sched.state.note if sched else "",
                })
        return sorted(rows, key=lambda row: row["id"])
    finally:
        await client.close()  # type: ignore[attr-defined]


async def describe_lines(database: str | None, schedule_id: str) -> list[str]:
    """A schedule's definition and state, one fact per line."""
    client = await c.connect(database)
    try:
        with c.rpc_errors():
            desc = await client.get_schedule_handle(schedule_id).describe()
    except c.CommandError as err:
        raise c.CommandError(f"schedule {schedule_id!r}: {err.message}") from None
    finally:
        await client.close()  # type: ignore[attr-defined]
    sched, info = desc.schedule, desc.info
    action = sched.action
    lines = [f"id:          {desc.id}",
             f"workflow:    {_workflow_of(action)}",
             f"task queue:  {getattr(action, 'task_queue', '')}",
             f"spec:        {_spec_text(sched.spec)}",
             f"paused:      {'yes' if sched.state.paused else 'no'}"
             + (f" ({sched.state.note})" if sched.state.note else ""),
             f"runs:        {info.num_actions} started, {info.num_actions_missed_catchup_window}"
             " missed"]
    if info.next_action_times:
        lines.append("next:        " + ", ".join(c.cell(t) for t in info.next_action_times[:3]))
    for recent in info.recent_actions[-5:]:
        started = getattr(recent.action, "workflow_id", "")
        lines.append(f"recent:      {c.cell(recent.started_at)} {started}")
    return lines


async def act(database: str | None, schedule_id: str, action: str, note: str | None) -> None:
    """Pause, unpause, trigger or delete a schedule."""
    client = await c.connect(database)
    try:
        handle = client.get_schedule_handle(schedule_id)
        with c.rpc_errors():
            if action == "pause":
                await handle.pause(note=note)
            elif action == "unpause":
                await handle.unpause(note=note)
            elif action == "trigger":
                await handle.trigger()
            else:
                await handle.delete()
    except c.CommandError as err:
        raise c.CommandError(f"schedule {schedule_id!r}: {err.message}") from None
    finally:
        await client.close()  # type: ignore[attr-defined]
