"""Workflows and activities the notebook-layer tests run on a real worker."""

from __future__ import annotations

from datetime import timedelta

from dbosify import activity, workflow
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError

TIMEOUT = timedelta(seconds=10)
ATTEMPTS: dict[str, int] = {}


@activity.defn
async def add_one(x: int) -> int:
    return x + 1


@activity.defn
async def flaky(key: str) -> str:
    # Fails its first attempt, so the history shows attempt 2 and the last failure.
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < 2:
        raise ApplicationError("try again", type="Flaky")
    return f"ok after {ATTEMPTS[key]}"


@activity.defn
async def refuse(x: int) -> int:
    raise ApplicationError("card declined", {"code": 51}, type="PaymentError", non_retryable=True)


@workflow.defn
class Approval:
    """Adds one, waits for ``approve`` (or the ``decide`` update), then adds one again."""

    def __init__(self) -> None:
        self.approved: bool | None = None
        self.stage = "new"

    @workflow.run
    async def run(self, x: int) -> int:
        self.stage = "adding"
        workflow.set_current_details("adding one")
        y = await workflow.execute_activity(add_one, x, start_to_close_timeout=TIMEOUT)
        self.stage = "waiting"
        workflow.set_current_details("waiting for approval")
        await workflow.wait_condition(lambda: self.approved is not None)
        if not self.approved:
            return -1
        await workflow.sleep(0.05)
        self.stage = "finishing"
        return await workflow.execute_activity(add_one, y, start_to_close_timeout=TIMEOUT)

    @workflow.signal
    def approve(self, ok: bool = True) -> None:
        self.approved = ok

    @workflow.update
    def decide(self, ok: bool) -> str:
        self.approved = ok
        return "approved" if ok else "rejected"

    @workflow.query
    def where(self) -> str:
        return self.stage


@workflow.defn
class Retrying:
    @workflow.run
    async def run(self, key: str) -> str:
        return await workflow.execute_activity(
            flaky, key, start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))


@workflow.defn
class Refused:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(refuse, x, start_to_close_timeout=TIMEOUT)


ACTIVITIES = [add_one, flaky, refuse]
WORKFLOWS = [Approval, Retrying, Refused]
