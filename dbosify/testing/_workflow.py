"""``WorkflowEnvironment``: temporalio's test environment, on a database instead of a server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any, NoReturn

import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.testing

from dbosify._runtime._process import close_current, current_process
from dbosify._store._database import resolve_database_url
from dbosify.client import Client


class WorkflowEnvironment(temporalio.testing.WorkflowEnvironment):
    """A place to run workflows under test, with temporalio's API.

    :meth:`start_local` gives a fresh embedded database (a SQLite file in a temporary directory,
    removed by :meth:`shutdown`) or the database you name; :meth:`from_client` wraps a client you
    have. As in temporalio, an ``assert`` that fails in workflow code fails the workflow (instead
    of retrying its task), and :meth:`sleep` is real time. Time skipping is a feature of
    Temporal's test servers that dbosify does not have: :meth:`start_time_skipping` says so.

    >>> async with await WorkflowEnvironment.start_local() as env:  # doctest: +SKIP
    ...     async with Worker(env.client, task_queue="q", workflows=[Greet]):
    ...         assert await env.client.execute_workflow(
    ...             Greet.run, "you", id="greet", task_queue="q") == "Hello, you"
    """

    _database: str | None = None
    _directory: str | None = None

    @classmethod
    async def start_local(
        cls,
        *,
        database: str | None = None,
        namespace: str = "default",
        data_converter: temporalio.converter.DataConverter = (
            temporalio.converter.DataConverter.default),
        interceptors: Sequence[temporalio.client.Interceptor] = (),
        plugins: Sequence[temporalio.client.Plugin] = (),
        default_workflow_query_reject_condition: (
            temporalio.common.QueryRejectCondition | None) = None,
        identity: str | None = None,
        **ignored: Any,
    ) -> WorkflowEnvironment:
        """An environment on ``database`` (a URL), or on a fresh SQLite file when none is given.

        temporalio's dev-server options (``ip``, ``port``, ``ui``, ``dev_server_*`` ...) are
        accepted and ignored: there is no server to start.
        """
        directory = None
        if database is None:
            directory = tempfile.mkdtemp(prefix="dbosify-test-")
            database = f"sqlite:///{directory}/dbosify.sqlite"
        try:
            client = await Client.connect(
                database, namespace=namespace, data_converter=data_converter,
                interceptors=interceptors, plugins=plugins,
                default_workflow_query_reject_condition=default_workflow_query_reject_condition,
                identity=identity)
        except BaseException:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        env = cls.from_client(client)
        assert isinstance(env, WorkflowEnvironment)
        env._database = resolve_database_url(database).url
        env._directory = directory
        return env

    @classmethod
    async def start_time_skipping(cls, **_: Any) -> NoReturn:
        """Not available: time skipping needs one of Temporal's test servers."""
        _no_time_skipping()

    @classmethod
    async def start_time_skipping_v2(cls, **_: Any) -> NoReturn:
        """Not available: time skipping needs one of Temporal's test servers."""
        _no_time_skipping()

    async def shutdown(self) -> None:
        """Close the environment's database (when :meth:`start_local` opened it) and remove
        the temporary one."""
        process = current_process()
        if self._database is not None and process is not None and \
                process.db.url == self._database:
            await asyncio.to_thread(close_current)
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def _no_time_skipping() -> NoReturn:
    raise NotImplementedError(
        "dbosify has no time-skipping test server: use WorkflowEnvironment.start_local() and "
        "short real durations (timers, timeouts) in tests")
