"""``ServiceClient.connect``: a Temporal service client whose server is the database."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import weakref
from typing import TYPE_CHECKING, Any

import temporalio.service

if TYPE_CHECKING:
    from dbosify._service._service import DatabaseService

OPEN_SERVICES: weakref.WeakSet[DatabaseService] = weakref.WeakSet()
"""The database services of this process whose client was not closed (one dropped without
``close()`` does not keep the database open)."""


class ServiceClient(temporalio.service.ServiceClient):
    """temporalio's ``ServiceClient``, whose :meth:`connect` opens a database instead of a
    gRPC connection to a Temporal server.

    The service it returns answers Temporal's RPCs from the database; pass it to
    ``Client(service, namespace=...)`` as with temporalio, or use ``Client.connect``, which does
    both. Every service client dbosify makes is an instance of this class (and of temporalio's).

    >>> service = await ServiceClient.connect(ConnectConfig(target_host="localhost:7233"))  # doctest: +SKIP
    """

    @classmethod
    def __subclasshook__(cls, subclass: type) -> Any:
        # The engine's DatabaseService cannot subclass this surface class (layers import
        # downwards), so it counts as one here; no DatabaseService exists before its module is
        # imported, hence the look in sys.modules instead of an import.
        engine = sys.modules.get("dbosify._service._service")
        if cls is ServiceClient and engine is not None and issubclass(
                subclass, engine.DatabaseService):
            return True
        return NotImplemented

    @staticmethod
    async def connect(config: temporalio.service.ConnectConfig) -> temporalio.service.ServiceClient:
        """Open the database ``config.target_host`` names: a database URL, or a Temporal
        address such as ``"localhost:7233"`` for the configured database (DESIGN §3)."""
        from dbosify._runtime._process import process_for
        from dbosify._service._service import DatabaseService
        from dbosify._store._database import resolve_database_url

        db = resolve_database_url(config.target_host or None)
        # Opening the database blocks (connect, migrate): keep it off the caller's loop.
        process = await asyncio.to_thread(process_for, db)
        service = DatabaseService(process, dataclasses.replace(config, target_host=db.redacted))
        OPEN_SERVICES.add(service)
        return service
