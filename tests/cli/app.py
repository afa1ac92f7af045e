"""Workflows the CLI tests drive (imported by the tests and by `dbosify worker`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dbosify import activity, workflow
from dbosify.exceptions import ApplicationError


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(greet, name,
                                               start_to_close_timeout=timedelta(seconds=30))


@workflow.defn
class Fails:
    @workflow.run
    async def run(self) -> None:
        raise ApplicationError("no data for today", non_retryable=True)


@workflow.defn
class Waiter:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.done = False

    @workflow.run
    async def run(self, limit: int) -> list[Any]:
        await workflow.wait_condition(lambda: self.done or len(self.items) >= limit)
        return self.items

    @workflow.signal
    def add(self, item: Any) -> None:
        self.items.append(item)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def count(self) -> int:
        return len(self.items)

    @workflow.update
    def add_many(self, first: Any, second: Any) -> int:
        self.items += [first, second]
        return len(self.items)


@activity.defn
async def slow_mark(path: str) -> str:
    import asyncio
    from pathlib import Path

    with Path(path).open("a") as f:
        f.write("started\n")
    await asyncio.sleep(2)
    with Path(path).open("a") as f:
        f.write("done\n")
    return "marked"


@workflow.defn
class SlowMark:
    @workflow.run
    async def run(self, path: str) -> str:
        return await workflow.execute_activity(slow_mark, path,
                                               start_to_close_timeout=timedelta(seconds=60))
