"""The workflows and activities behind the golden histories (DESIGN §9.1).

The checked-in histories (``*.json``) and stored records (``golden.sqlite``) were made by running
these with ``make_golden.py``. Do not change them: the golden tests replay the stored histories
and records with this code, and a change here is exactly the nondeterminism they must catch.
"""

from __future__ import annotations

from datetime import timedelta

from dbosify import activity, workflow
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError

TASK_QUEUE = "golden"
TIMEOUT = timedelta(seconds=10)


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
async def flaky(name: str) -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("first attempt fails", type="Flaky")
    return f"{name} on attempt {activity.info().attempt}"


class RecordsSteps:
    """The steps a run has passed, for its ``steps_done`` query: replaying a stored run to answer
    the query is what the golden tests check (a query writes no event)."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    @workflow.query
    def steps_done(self) -> list[str]:
        return self.steps


@workflow.defn
class OneActivity(RecordsSteps):
    @workflow.run
    async def run(self, name: str) -> str:
        self.steps.append("started")
        result = await workflow.execute_activity(greet, name, start_to_close_timeout=TIMEOUT)
        self.steps.append(result)
        return result


@workflow.defn
class OneTimer(RecordsSteps):
    @workflow.run
    async def run(self, seconds: float) -> str:
        self.steps.append("started")
        await workflow.sleep(seconds)
        self.steps.append("slept")
        return f"slept {seconds}s"


@workflow.defn
class RetriedActivity(RecordsSteps):
    @workflow.run
    async def run(self, name: str) -> str:
        self.steps.append("started")
        result = await workflow.execute_activity(
            flaky, name, start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100),
                                     maximum_attempts=3))
        self.steps.append(result)
        return result


WORKFLOWS = [OneActivity, OneTimer, RetriedActivity]
ACTIVITIES = [greet, flaky]

RUNS = [
    # (workflow id, workflow class, argument, result): one golden history per run.
    ("golden-activity", OneActivity, "World", "Hello, World!"),
    ("golden-timer", OneTimer, 0.2, "slept 0.2s"),
    ("golden-retry", RetriedActivity, "Ann", "Ann on attempt 2"),
]
"""What ``make_golden.py`` runs, and what replaying each stored run must give back."""
