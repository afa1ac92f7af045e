"""dbosify's Client: temporalio's own ``Client`` over a service that answers from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.service
from typing_extensions import Self

from dbosify._runtime._process import Process, close_current, current_process
from dbosify._service._service import DatabaseService
from dbosify.service._client import OPEN_SERVICES, ServiceClient


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
        service = await ServiceClient.connect(temporalio.service.ConnectConfig(
            target_host=target_host or "", identity=identity or ""))
        return cls(
            service,
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
        OPEN_SERVICES.discard(service)
        process = service.process
        still_used = process.workers or any(s.process is process for s in list(OPEN_SERVICES))
        if not still_used and not process.closed and current_process() is process:
            # Destroying DBOS blocks (threads joined, pools disposed): off the caller's loop.
            await asyncio.to_thread(_close_if_unused, process)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()


def _close_if_unused(process: Process) -> None:
    # Checked again here: a worker may have started while this thread was scheduled.
    if current_process() is process and not process.workers:
        close_current()
