"""The CLI driven through click's CliRunner, beside an in-process worker of tests/cli/app.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from dbosify.cli import cli
from dbosify.client import Client
from dbosify.worker import Worker
from tests.cli import app

Q = "cli-q"


@dataclass
class Outcome:
    """What one command did."""

    exit_code: int
    stdout: str
    stderr: str


def invoke(*args: str) -> Outcome:
    """Run ``dbosify ARGS`` in this process, as a user would from a shell."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


async def ainvoke(*args: str) -> Outcome:
    """:func:`invoke` from async code: each command runs its own event loop, in a thread."""
    return await asyncio.to_thread(invoke, *args)


@pytest.fixture
async def served(database: str) -> AsyncIterator[Client]:
    """A client and a worker of tests/cli/app.py on task queue ``cli-q``."""
    client = await Client.connect(database)
    async with Worker(client, task_queue=Q, workflows=[app.Greet, app.Fails, app.Waiter],
                      activities=[app.greet]):
        yield client
    await client.close()
