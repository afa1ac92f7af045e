"""Fixtures of the notebook API tests: a session on the test's database (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import dbosify.notebook as nb
from dbosify.notebook._session import Session

COUNTER = '''
from datetime import timedelta
from pathlib import Path

from dbosify import activity, workflow

LOG = Path("calls.log")


@activity.defn
def add_one(x: int) -> int:
    with LOG.open("a") as f:
        f.write(f"add_one {x}\\n")
    return x + INCREMENT


INCREMENT = 1


@workflow.defn
class Counter:
    def __init__(self) -> None:
        self.proceed = False
        self.parked = False

    @workflow.run
    async def run(self, x: int) -> int:
        y = await workflow.execute_activity(add_one, x,
                                            start_to_close_timeout=timedelta(seconds=10))
        self.parked = True
        await workflow.wait_condition(lambda: self.proceed)
        return await workflow.execute_activity(add_one, y,
                                               start_to_close_timeout=timedelta(seconds=10))

    @workflow.signal
    def go(self) -> None:
        self.proceed = True

    @workflow.query
    def waiting(self) -> bool:
        return self.parked and not self.proceed

    @workflow.update
    def bump(self, by: int) -> int:
        return by * 2
'''


@pytest.fixture
def namespace() -> dict[str, Any]:
    """A stand-in for the notebook's user namespace."""
    return {}


@pytest.fixture
def session(database: str, namespace: dict[str, Any]) -> Iterator[Session]:
    """A connected session on the test's database, closed afterwards."""
    sess, _ = nb.connect(database, notebook="test-notebook", namespace=namespace)
    try:
        yield sess
    finally:
        nb.close()
