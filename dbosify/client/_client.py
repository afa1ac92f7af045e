"""dbosify's Client: temporalio's own ``Client`` over a service that answers from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import temporalio.client
import temporalio.common
import temporalio.converter
import temporalio.service
from typing_extensions import Self

from dbosify._runtime._process import process_for
from dbosify._service._service import DatabaseService
from dbosify._store._database import resolve_database_url


class Client(temporalio.client.Client):
    """temporalio's ``Client``, connected to a database instead of a Temporal server.

    Everything but :meth:`connect` is temporalio's own code: handles, ``result()`` (following
    continue-as-new runs), ``describe()``, ``signal``/``query``/``cancel``/``terminate``,
    ``list_workflows``, ``fetch_history()``, interceptors and error types.
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
