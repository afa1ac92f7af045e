"""Bounded concurrency inside a workflow: at most ``limit`` activities at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def map_bounded(items: Sequence[Any], limit: int,
                      call: Callable[[int, Any], Awaitable[T]]) -> list[T]:
    """``call(index, item)`` for every item, at most ``limit`` running at once, results in the
    items' order. Workflow code: asyncio's semaphore and gather are deterministic on
    temporalio's workflow event loop (waiters are woken in order)."""
    gate = asyncio.Semaphore(max(1, limit))

    async def one(index: int, item: Any) -> T:
        async with gate:
            return await call(index, item)

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
