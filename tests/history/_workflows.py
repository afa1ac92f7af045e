"""Workflows the history tests drive, and the activities they call (as plain functions).

Several classes share a workflow name: one is the code that ran, the others the "changed code"
that replay must reject (or accept).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

TIMEOUT = timedelta(seconds=10)
ACTIVITIES = {
    "double": lambda x: x * 2,
    "triple": lambda x: x * 3,
    "greet": lambda name: f"hello {name}",
    "greet_v2": lambda name: f"hi {name}",
}


def _decline(_: Any) -> Any:
    raise ApplicationError("card declined", {"code": 51}, type="PaymentError", non_retryable=True)


ACTIVITIES["charge"] = _decline


@workflow.defn(name="OneActivity")
class OneActivity:
    @workflow.run
    async def run(self, x: int) -> int:
        result: int = await workflow.execute_activity("double", x, start_to_close_timeout=TIMEOUT)
        return result


@workflow.defn(name="OneActivity")
class OneActivityOtherType:
    @workflow.run
    async def run(self, x: int) -> int:
        result: int = await workflow.execute_activity("triple", x, start_to_close_timeout=TIMEOUT)
        return result


@workflow.defn(name="OneActivity")
class OneActivityAsTimer:
    @workflow.run
    async def run(self, x: int) -> int:
        await workflow.sleep(5)
        return x * 2


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(30)
        return "rested"


@workflow.defn(name="Charge")
class Charge:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity("charge", 1, start_to_close_timeout=TIMEOUT)
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return f"{err.cause.type}: {err.cause.message}"
        return "charged"


@workflow.defn(name="Charge")
class ChargeUncaught:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity("charge", 1, start_to_close_timeout=TIMEOUT)
        return "charged"


@workflow.defn
class Gather:
    @workflow.run
    async def run(self, x: int) -> list[int]:
        results = await asyncio.gather(
            workflow.execute_activity("double", x, start_to_close_timeout=TIMEOUT),
            workflow.execute_activity("triple", x, start_to_close_timeout=TIMEOUT),
        )
        return list(results)


@workflow.defn(name="Greeter")
class Greeter:
    def __init__(self) -> None:
        self.name: str | None = None

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.name is not None)
        assert self.name is not None
        result: str = await workflow.execute_activity(
            "greet", self.name, start_to_close_timeout=TIMEOUT
        )
        return result

    @workflow.signal
    def set_name(self, name: str) -> None:
        self.name = name

    @workflow.update
    def set_name_update(self, name: str) -> str:
        self.name = name
        return "ok"


@workflow.defn(name="Greeter")
class GreeterIgnoringSignals:
    @workflow.run
    async def run(self) -> str:
        return "hello nobody"


@workflow.defn(name="Patched")
class Patched:
    @workflow.run
    async def run(self) -> str:
        activity = "greet_v2" if workflow.patched("v2") else "greet"
        result: str = await workflow.execute_activity(
            activity, "ann", start_to_close_timeout=TIMEOUT
        )
        return result


@workflow.defn(name="Patched")
class PatchRemovedOldBranch:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_activity(
            "greet", "ann", start_to_close_timeout=TIMEOUT
        )
        return result


@workflow.defn(name="Fails")
class Fails:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(1)
        raise ApplicationError("no way", type="Refused", non_retryable=True)


@workflow.defn(name="Fails")
class Succeeds:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(1)
        return "fine"


BROKEN = {"on": True}


@workflow.defn
class Broken:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(1)
        if BROKEN["on"]:
            raise RuntimeError("bug")  # not an ApplicationError: fails the task, not the run
        return "fixed"


@workflow.defn
class Counter:
    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.sleep(1)
        if n < 1:
            workflow.continue_as_new(n + 1)
        return n


@workflow.defn
class Random:
    @workflow.run
    async def run(self) -> int:
        # Enough draws that a wrong seed picks another activity on replay for sure.
        kinds = [workflow.random().randint(0, 1) for _ in range(16)]
        total = 0
        for kind in kinds:
            name = "double" if kind else "triple"
            total += await workflow.execute_activity(name, 1, start_to_close_timeout=TIMEOUT)
        return total


@workflow.defn
class Cancels:
    def __init__(self) -> None:
        self.stop = False

    @workflow.run
    async def run(self) -> str:
        handle = workflow.start_activity("double", 1, start_to_close_timeout=TIMEOUT)
        await workflow.wait_condition(lambda: self.stop)
        handle.cancel()
        try:
            await handle
        except ActivityError as err:
            return type(err.cause).__name__
        return "finished"

    @workflow.signal
    def halt(self) -> None:
        self.stop = True


@workflow.defn(name="Parent")
class Parent:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_child_workflow("Kid", "ann", id="kid-1")
        await workflow.get_external_workflow_handle("other").signal("poke", 1)
        await workflow.get_external_workflow_handle("other").cancel()
        return result


@workflow.defn(name="Parent")
class ParentOfAnotherKid:
    @workflow.run
    async def run(self) -> str:
        result: str = await workflow.execute_child_workflow("OtherKid", "ann", id="kid-1")
        return result
