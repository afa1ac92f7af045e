"""timeline(): a run's picture as inline SVG, lanes driven by its history."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET

from dbosify.client import Client
from dbosify.notebook import Timeline, timeline
from dbosify.worker import Worker

from ._flows import ACTIVITIES, WORKFLOWS, Approval, Retrying

SVG = "{http://www.w3.org/2000/svg}"


async def test_timeline_of_a_finished_run(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="tl-1", task_queue="q")
        await handle.signal(Approval.approve, True)
        assert await handle.result() == 3
        await client.execute_workflow(Retrying.run, str(uuid.uuid4()), id="tl-2",
                                      task_queue="q")
    picture = timeline(handle)
    assert isinstance(picture, Timeline)
    labels = [lane.label for lane in picture.lanes]
    assert labels == ["workflow Approval", "signals & updates", "add_one #1",
                      "timer 1 (0:00:00.050000)", "add_one #2"]
    first = picture.lane("add_one #1")
    assert [s.state for s in first.segments] == ["waiting", "completed"]
    assert all(s.end is not None and s.end >= s.start for s in first.segments)
    assert [s.state for s in picture.lane("timer 1 (0:00:00.050000)").segments] == ["fired"]
    signals = picture.lane("signals & updates").markers
    assert [(m.kind, m.label) for m in signals] == [("signal", "approve")]
    assert picture.lane("workflow Approval").segments[0].state == "completed"
    # The drawing is well-formed SVG with one bar per segment and one mark per signal.
    root = ET.fromstring(picture._repr_svg_())
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class")]
    assert sorted(r.get("class") for r in bars) == sorted(
        ["completed", "waiting", "completed", "fired", "waiting", "completed"])
    assert [p.get("class") for p in root.iter(f"{SVG}path")] == ["signal"]
    assert picture._repr_html_().startswith("<div")

    retried = timeline(client.get_workflow_handle("tl-2"))
    lane = retried.lane("flaky #1")
    assert lane.attempts == 2
    assert "previous attempt failed: try again" in lane.segments[-1].title
    assert "flaky #1 (attempt 2)" in retried.svg


async def test_timeline_of_a_waiting_run_and_escaping(client: Client) -> None:
    async with Worker(client, task_queue="q", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = await client.start_workflow(Approval.run, 1, id="<tl&3>", task_queue="q")
        for _ in range(200):
            if await handle.query(Approval.where) == "waiting":
                break
            await asyncio.sleep(0.02)
        await handle.signal("approve", "<b>not bold</b>")  # a name and args are shown escaped
        await handle.signal("<script>alert(1)</script>")
        for _ in range(200):  # signals enter the history when the run's next task records them
            history = await handle.fetch_history()
            if sum(e.HasField("workflow_execution_signaled_event_attributes")
                   for e in history.events) == 2:
                break
            await asyncio.sleep(0.02)
        await handle.terminate("done")
    picture = timeline(history)
    assert picture.lane("workflow Approval").segments[-1].end is None  # still running then
    svg = picture.svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "&lt;tl&amp;3&gt;" in svg
    ET.fromstring(svg)  # still well-formed with the hostile names in it
    closed = timeline(handle)
    assert closed.lane("workflow Approval").segments[-1].state == "terminated"
