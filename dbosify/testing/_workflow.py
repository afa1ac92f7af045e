"""``WorkflowEnvironment``: temporalio's test environment, on a database instead of a server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import temporalio.api.common.v1
import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.testing
from temporalio.testing import TimeSkippingConfig

from dbosify._runtime._process import close_current, current_process
from dbosify._runtime._time_skipping import TimeSkipper
from dbosify._store import _clock
from dbosify._store._database import resolve_database_url
from dbosify.client import Client

_SKIP_UNTIL_DONE = TimeSkippingConfig()
"""temporalio's default config: every workflow skips time until it completes."""


class WorkflowEnvironment(temporalio.testing.WorkflowEnvironment):
    """A place to run workflows under test, with temporalio's API.

    :meth:`start_local` gives a fresh embedded database (a SQLite file in a temporary directory,
    removed by :meth:`shutdown`) or the database you name; :meth:`from_client` wraps a client you
    have. As in temporalio, an ``assert`` that fails in workflow code fails the workflow (instead
    of retrying its task), and :meth:`sleep` is real time. :meth:`start_time_skipping` gives a
    fresh embedded database whose clock skips ahead while a test waits, as Temporal's
    time-skipping test server does; :meth:`start_time_skipping_v2` one where each workflow has
    its own virtual clock (Temporal's per-workflow time skipping).

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
    async def start_time_skipping(
        cls,
        *,
        data_converter: temporalio.converter.DataConverter = (
            temporalio.converter.DataConverter.default),
        interceptors: Sequence[temporalio.client.Interceptor] = (),
        plugins: Sequence[temporalio.client.Plugin] = (),
        default_workflow_query_reject_condition: (
            temporalio.common.QueryRejectCondition | None) = None,
        identity: str | None = None,
        **ignored: Any,
    ) -> WorkflowEnvironment:
        """An environment on a fresh embedded database whose clock skips, with the semantics of
        temporalio's time-skipping test server: while the test awaits a workflow's result,
        whenever every run waits only on time (timers, activity retries and timeouts, run
        timeouts, schedules), the clock jumps to the next deadline. :meth:`sleep` moves the
        clock forward, :meth:`get_current_time` and ``workflow.now()`` show the skipped time,
        and :meth:`auto_time_skipping_disabled` stops the automatic skips. Time stands still
        for no one: while an activity runs, the clock runs at wall speed.

        temporalio's test-server options (``port``, ``test_server_*`` ...) are accepted and
        ignored: there is no server to download or start.

        >>> async with await WorkflowEnvironment.start_time_skipping() as env:  # doctest: +SKIP
        ...     async with Worker(env.client, task_queue="q", workflows=[WaitAMonth]):
        ...         await env.client.execute_workflow(WaitAMonth.run, id="w", task_queue="q")
        """
        local = await cls.start_local(
            data_converter=data_converter, interceptors=interceptors, plugins=plugins,
            default_workflow_query_reject_condition=default_workflow_query_reject_condition,
            identity=identity)
        assert isinstance(local, WorkflowEnvironment)
        process = current_process()
        assert process is not None
        env = _TimeSkippingEnvironment(local.client, TimeSkipper(process))
        env._database, env._directory = local._database, local._directory
        return env

    @classmethod
    async def start_time_skipping_v2(
        cls,
        *,
        ts_config: TimeSkippingConfig = _SKIP_UNTIL_DONE,
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
        """:meth:`start_local` with per-workflow time skipping, as temporalio's: the client is
        wrapped by temporalio's own :class:`~temporalio.testing.TimeSkipper`, which stamps
        ``ts_config`` on every workflow it starts. Each workflow has its own virtual clock:
        while its skipping is enabled and it waits on time alone (no activity, child or
        outgoing signal in flight), its clock jumps to its next timer or timeout.
        :meth:`fast_forward` moves one workflow's clock (``fast_forward(handle)``: skip until
        it completes), :meth:`get_current_time` takes a handle, and
        :meth:`with_time_skipping_disabled` starts workflows without the config.
        :meth:`sleep` and :meth:`auto_time_skipping_disabled` raise, as temporalio's V2
        environment does. ``database``: as for :meth:`start_local` (a fresh SQLite file when
        none is given).

        >>> async with await WorkflowEnvironment.start_time_skipping_v2() as env:  # doctest: +SKIP
        ...     async with Worker(env.client, task_queue="q", workflows=[WaitAMonth]):
        ...         await env.client.execute_workflow(WaitAMonth.run, id="w", task_queue="q")
        """
        local = await cls.start_local(
            database=database, namespace=namespace, data_converter=data_converter,
            interceptors=interceptors,
            plugins=plugins,
            default_workflow_query_reject_condition=default_workflow_query_reject_condition,
            identity=identity)
        assert isinstance(local, WorkflowEnvironment)
        env = _TimeSkippingV2Environment(local.client, ts_config)
        env._database, env._directory = local._database, local._directory
        return env

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


class _TimeSkippingEnvironment(WorkflowEnvironment):
    """The environment :meth:`WorkflowEnvironment.start_time_skipping` returns."""

    def __init__(self, client: temporalio.client.Client, skipper: TimeSkipper) -> None:
        self._skipper = skipper
        self._auto = True
        config = client.config()
        config["interceptors"] = [*config["interceptors"], _UnlockWhileAwaitingResults(self)]
        super().__init__(Client(**config))

    @property
    def supports_time_skipping_v1(self) -> bool:
        return True

    async def sleep(self, duration: timedelta | float) -> None:
        """Move the clock forward by ``duration``; timers due meanwhile fire in order."""
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
        await self._skipper.sleep(seconds)

    async def get_current_time(
            self, handle: temporalio.client.WorkflowHandle[Any, Any] | None = None) -> datetime:
        """The environment's (skipped) time."""
        return datetime.fromtimestamp(_clock.now_ms() / 1000, timezone.utc)

    @contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        """No automatic skips within the block (:meth:`sleep` still skips)."""
        was = self._auto
        self._auto = False
        try:
            yield None
        finally:
            self._auto = was

    @asynccontextmanager
    async def time_skipping_unlocked(self) -> AsyncIterator[None]:
        """Skip automatically within the block (while a result is awaited)."""
        if not self._auto:
            yield None
            return
        self._skipper.unlock()
        try:
            yield None
        finally:
            self._skipper.lock()

    async def shutdown(self) -> None:
        """Stop skipping, return the engine to wall time and close the database."""
        self._skipper.stop()
        _clock.reset()
        await super().shutdown()


class _TimeSkippingV2Environment(WorkflowEnvironment):
    """The environment :meth:`WorkflowEnvironment.start_time_skipping_v2` returns: temporalio's
    ``_V2WorkflowEnvironment`` on a database (the service answers the time-skipping RPCs)."""

    def __init__(self, client: temporalio.client.Client, ts_config: TimeSkippingConfig) -> None:
        self._ts_skipper = temporalio.testing.TimeSkipper(client, config=ts_config)
        super().__init__(self._ts_skipper.client)

    @property
    def supports_time_skipping_v2(self) -> bool:
        return True

    async def sleep(self, duration: timedelta | float) -> None:
        """Unsupported, as on temporalio's V2 environment: use :meth:`fast_forward`."""
        raise RuntimeError(
            "env.sleep is not supported in time-skipping V2 environments; use "
            "env.fast_forward(handle, duration) on a specific workflow.")

    async def get_current_time(
            self, handle: temporalio.client.WorkflowHandle[Any, Any] | None = None) -> datetime:
        """A workflow's virtual time (each workflow has its own clock)."""
        if handle is None:
            raise RuntimeError(
                "env.get_current_time requires a workflow handle in time-skipping V2 "
                "environments; each workflow has its own virtual clock.")
        return await self._ts_skipper.get_current_time(handle)

    @contextmanager
    def auto_time_skipping_disabled(self) -> Iterator[None]:
        """Unsupported, as on temporalio's V2 environment: use
        :meth:`with_time_skipping_disabled`."""
        raise RuntimeError(
            "env.auto_time_skipping_disabled is not supported in time-skipping V2 "
            "environments; use env.with_time_skipping_disabled() to suspend time-skipping "
            "config stamping on newly-started workflows.")
        yield None  # A generator, for @contextmanager.

    async def fast_forward(self, handle: temporalio.client.WorkflowHandle[Any, Any],
                           duration: timedelta | float | None = None, /) -> bool:
        """Move ``handle``'s clock by ``duration`` (True once done; False if the workflow
        closed first), or with no duration skip until it completes (then False)."""
        return await self._ts_skipper.fast_forward(handle, duration)

    @contextmanager
    def with_time_skipping_disabled(self) -> Iterator[None]:
        """Workflows started within the block have no time-skipping config."""
        with self._ts_skipper.with_time_skipping_disabled():
            yield None

    async def get_time_skipping_info(
            self, handle: temporalio.client.WorkflowHandle[Any, Any]
    ) -> temporalio.api.common.v1.TimeSkippingInfo | None:
        """The workflow's ``TimeSkippingInfo`` (None if its skipping was never enabled)."""
        return await self._ts_skipper.get_time_skipping_info(handle)


class _UnlockWhileAwaitingResults(temporalio.client.Interceptor):
    """Handles started through the environment's client skip time while awaiting a result."""

    def __init__(self, env: _TimeSkippingEnvironment) -> None:
        self.env = env

    def intercept_client(
            self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _SkippingOutbound(next, self.env)


class _SkippingOutbound(temporalio.client.OutboundInterceptor):
    def __init__(self, next: temporalio.client.OutboundInterceptor,
                 env: _TimeSkippingEnvironment) -> None:
        super().__init__(next)
        self.env = env

    async def start_workflow(
            self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        handle.__class__ = _SkippingHandle
        handle.env = self.env  # type: ignore[attr-defined]
        return handle


class _SkippingHandle(temporalio.client.WorkflowHandle[Any, Any]):
    env: _TimeSkippingEnvironment

    async def result(self, *, follow_runs: bool = True,
                     rpc_metadata: Mapping[str, str | bytes] = {},
                     rpc_timeout: timedelta | None = None) -> Any:
        async with self.env.time_skipping_unlocked():
            return await super().result(follow_runs=follow_runs, rpc_metadata=rpc_metadata,
                                        rpc_timeout=rpc_timeout)
