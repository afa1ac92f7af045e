"""The benchmarked code: dbosify workflows and activities, and the bare-DBOS floors.

Everything is defined at import time, before any DBOS launch, so DBOS's registry holds the floor
functions whichever of dbosify or the floor phase launches DBOS first.
"""

from __future__ import annotations

from datetime import timedelta

from dbos import DBOS

from dbosify import activity, workflow

_TIMEOUT = timedelta(seconds=60)


# dbosify ------------------------------------------------------------------------------------------


@activity.defn
async def bump(x: int) -> int:
    """The activity every workload runs: trivial, so the engine's overhead is what is measured."""
    return x + 1


@workflow.defn
class OneActivity:
    """W1: one activity, then return."""

    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(bump, x, start_to_close_timeout=_TIMEOUT)


@workflow.defn
class OneLocalActivity:
    """L1: one local activity, then return (W1 with ``execute_local_activity``)."""

    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_local_activity(bump, x, start_to_close_timeout=_TIMEOUT)


@workflow.defn
class ThreeActivities:
    """W2: three activities in sequence."""

    @workflow.run
    async def run(self, x: int) -> int:
        x = await workflow.execute_activity(bump, x, start_to_close_timeout=_TIMEOUT)
        x = await workflow.execute_activity(bump, x, start_to_close_timeout=_TIMEOUT)
        return await workflow.execute_activity(bump, x, start_to_close_timeout=_TIMEOUT)


@workflow.defn
class AwaitSignal:
    """W3: park on ``wait_condition`` until the ``release`` signal, then return its value."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.ready = False

    @workflow.run
    async def run(self) -> int:
        self.ready = True
        await workflow.wait_condition(lambda: self.value is not None)
        assert self.value is not None
        return self.value

    @workflow.signal
    def release(self, value: int) -> None:
        self.value = value

    @workflow.query
    def is_ready(self) -> bool:
        return self.ready


ENGINE_WORKFLOWS = [OneActivity, OneLocalActivity, ThreeActivities, AwaitSignal]
ENGINE_ACTIVITIES = [bump]


# Bare DBOS (the floors) ---------------------------------------------------------------------------


@DBOS.step()
async def floor_step(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def floor_one_step(x: int) -> int:
    """W1_floor: a DBOS workflow with one step."""
    return await floor_step(x)


@DBOS.workflow()
async def floor_three_steps(x: int) -> int:
    """W2_floor: a DBOS workflow with three steps."""
    x = await floor_step(x)
    x = await floor_step(x)
    return await floor_step(x)
