"""Workflows both time-skipping test modules run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from dbosify import workflow


@workflow.defn
class WaitAMonth:
    @workflow.run
    async def run(self) -> float:
        before = workflow.now()
        await asyncio.sleep(timedelta(days=30).total_seconds())
        return (workflow.now() - before).total_seconds()
