"""dbosify's Client: temporalio's own ``Client`` over a service that answers from the database."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.service
from typing_extensions import Self

from dbosify._runtime._process import Process, close_current, current_process, process_for
from dbosify._service._service import DatabaseService
from dbosify._store._database import resolve_database_url


class Client(temporalio.client.Client):
    """temporalio's ``Client``, connected to a database instead of a Temporal server.

    Everything but :meth:`connect` is temporalio's own code: handles, ``result()`` (following
    continue-as-new runs), ``describe()``, ``signal``/``query``/``cancel``/``terminate``,
    ``list_workflows``, ``fetch_history()``, interceptors and error types.

    It is also an async context manager, as in the earlier dbosify::

        async with await Client.connect(url) as client:
            print(await client.execute_workflow(Greet.run, "Ann", id="g1", task_queue="q"))

    :meth:`close` (or leaving the ``async with``) ends the client: its calls are refused from
    then on, and when no other client and no worker of this process uses the database any more,
    the database and DBOS are released. Running workers are never stopped by it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _open.add(self)

    @classmethod
    async def connect(
        cls,
        target_host: str | None = None,
        *,
        namespace: str = "default",
        data_converter: temporalio.converter.DataConverter = temporalio.converter.DataConverter.default,
        plugins: Sequence[temporalio.client.Plugin] = (),
        interceptors: Sequence[temporalio.client.Interceptor] = (),
        default_workflow_query_reject_condition: temporalio.common.QueryRejectCondition | None = None,
        identity: str | None = None,
        **ignored: Any,
    ) -> Self:
        """Connect to a database: a URL (``postgresql://...``, ``sqlite:///file.sqlite``), a
        Temporal address such as ``"localhost:7233"`` (then the configured database is used, so
        Temporal samples run unchanged), or nothing (``DBOSIFY_DATABASE_URL``, else the
        embedded SQLite file ``.dbosify/dbosify.sqlite``).

        Server-connection options of temporalio (``tls``, ``api_key``, ``retry_config`` ...)
        are accepted and ignored: there is no server.

        >>> client = await Client.connect()                      # doctest: +SKIP
        >>> client = await Client.connect("postgresql://localhost/app")  # doctest: +SKIP
        """
        db = resolve_database_url(target_host)
        # Opening the database blocks (connect, migrate): keep it off the caller's loop.
        process = await asyncio.to_thread(process_for, db)
        config = temporalio.service.ConnectConfig(target_host=db.redacted,
                                                  identity=identity or "")
        return cls(
            DatabaseService(process, config),
            namespace=namespace,
            data_converter=data_converter,
            plugins=plugins,
            interceptors=interceptors,
            default_workflow_query_reject_condition=default_workflow_query_reject_condition,
        )

    async def close(self) -> None:
        """End this client (see the class docstring); closing twice is harmless."""
        service = self.service_client
        if not isinstance(service, DatabaseService) or service.closed:
            return
        service.closed = True
        _open.discard(self)
        process = service.process
        still_used = process.workers or any(
            isinstance(c.service_client, DatabaseService) and c.service_client.process is process
            for c in list(_open))
        if not still_used and not process.closed and current_process() is process:
            # Destroying DBOS blocks (threads joined, pools disposed): off the caller's loop.
            await asyncio.to_thread(_close_if_unused, process)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


_open: weakref.WeakSet[Client] = weakref.WeakSet()
"""The clients of this process not closed yet (a client dropped without close() does not keep
the database open)."""


def _close_if_unused(process: Process) -> None:
    # Checked again here: a worker may have started while this thread was scheduled.
    if current_process() is process and not process.workers:
        close_current()
