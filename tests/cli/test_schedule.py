"""dbosify schedule list | describe | pause | unpause | trigger | delete, on both backends."""

from __future__ import annotations

import asyncio

from dbosify.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from tests.cli.conftest import Q, ainvoke


async def test_schedule_commands(database: str, served: Client) -> None:
    from datetime import timedelta

    out = await ainvoke("schedule", "list", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "no schedules\n")
    await served.create_schedule("hourly", Schedule(
        action=ScheduleActionStartWorkflow("Greet", "Sched", id="hourly-run", task_queue=Q),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))])))

    out = await ainvoke("schedule", "list", "--database", database)
    assert out.exit_code == 0
    header, _, row = out.stdout.splitlines()
    assert header.split()[:3] == ["ID", "WORKFLOW", "SPEC"]
    assert row.split()[:4] == ["hourly", "Greet", "every", "1h"]

    out = await ainvoke("schedule", "pause", "hourly", "--note", "maintenance",
                        "--database", database)
    assert (out.exit_code, out.stdout) == (0, "schedule 'hourly' paused\n")
    assert (await served.get_schedule_handle("hourly").describe()).schedule.state.paused
    out = await ainvoke("schedule", "describe", "hourly", "--database", database)
    assert out.exit_code == 0
    assert "workflow:    Greet" in out.stdout
    assert "paused:      yes (maintenance)" in out.stdout
    out = await ainvoke("schedule", "unpause", "hourly", "--database", database)
    assert out.exit_code == 0
    assert not (await served.get_schedule_handle("hourly").describe()).schedule.state.paused

    out = await ainvoke("schedule", "trigger", "hourly", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "schedule 'hourly' triggered\n")
    for _ in range(100):
        runs = [e async for e in served.list_workflows("WorkflowType = 'Greet'")]
        if runs:
            break
        await asyncio.sleep(0.1)
    assert runs and runs[0].id.startswith("hourly-run")
    assert await served.get_workflow_handle(runs[0].id).result() == "Hello, Sched!"

    out = await ainvoke("schedule", "delete", "hourly", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "schedule 'hourly' deleted\n")
    out = await ainvoke("schedule", "describe", "hourly", "--database", database)
    assert out.exit_code == 1
    assert len(out.stderr.splitlines()) == 1 and "'hourly'" in out.stderr


def test_duration_text() -> None:
    from datetime import timedelta

    from dbosify.cli._schedules import duration_text

    assert [duration_text(timedelta(seconds=s)) for s in (1, 30, 300, 5400, 86400, 90061)] == \
        ["1s", "30s", "5m", "1h30m", "1d", "1d1h1m1s"]
