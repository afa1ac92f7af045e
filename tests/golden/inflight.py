"""Workflows left in flight in ``inflight-v1.sqlite`` (record format 1), for the upgrade test.

``make_inflight.py`` ran these with dbosify as it was before record format 2 (each run's commands
stored with its next event) and SIGKILLed the worker with every run in flight. Do not change
them: ``tests/_runtime/test_upgrade.py`` recovers those runs with today's engine.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from dbosify import activity, workflow

TASK_QUEUE = "inflight"
IDENTITY = "golden-inflight-worker"
TIMEOUT = timedelta(seconds=30)
SLEEP_SECONDS = 4.0

gates_open = False
"""The generator keeps gates shut until it dies; the upgrade test opens them."""
executions: Counter[str] = Counter()
"""Activity executions in this process, by name."""


@activity.defn
async def step(name: str) -> str:
    executions[name] += 1
    return name


@activity.defn
async def gate(name: str) -> str:
    executions[name] += 1
    while not gates_open:
        await asyncio.sleep(0.01)
    return name


@workflow.defn
class WaitsForSignal:
    """``a``, then waits for ``proceed``, then ``b``."""

    def __init__(self) -> None:
        self.words: list[str] = []

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step, "a", start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: bool(self.words))
        last = await workflow.execute_activity(step, "b", start_to_close_timeout=TIMEOUT)
        return "-".join([first, *self.words, last])

    @workflow.signal
    def proceed(self, word: str) -> None:
        self.words.append(word)


@workflow.defn
class FirstActivity:
    """A gate scheduled by the first activation (killed while it runs), then a step."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(gate, "g1", start_to_close_timeout=TIMEOUT)
        last = await workflow.execute_activity(step, "s1", start_to_close_timeout=TIMEOUT)
        return f"{first}-{last}"


@workflow.defn
class SecondActivity:
    """A step, then a gate (killed while it runs)."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step, "s2", start_to_close_timeout=TIMEOUT)
        last = await workflow.execute_activity(gate, "g2", start_to_close_timeout=TIMEOUT)
        return f"{first}-{last}"


@workflow.defn
class Sleeping:
    """A step, then a ``SLEEP_SECONDS`` timer (killed while it runs)."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step, "s3", start_to_close_timeout=TIMEOUT)
        before = workflow.now()
        await workflow.sleep(SLEEP_SECONDS)
        slept = workflow.now() - before >= timedelta(seconds=SLEEP_SECONDS)
        return f"{first}-{'slept' if slept else 'woke-early'}"


WORKFLOWS = [WaitsForSignal, FirstActivity, SecondActivity, Sleeping]
ACTIVITIES = [step, gate]
RUNS = [("waits-for-signal", WaitsForSignal), ("first-activity", FirstActivity),
        ("second-activity", SecondActivity), ("sleeping", Sleeping)]
