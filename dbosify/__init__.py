"""dbosify: Temporal's Python programming model, run on a database instead of a Temporal cluster.

Workflows and activities written for the Temporal Python SDK (``temporalio``) run on Postgres, or
on an embedded SQLite file, through DBOS Transact: every step a workflow takes is checkpointed in
the database, so a crashed run resumes on any worker. There is no server to run. Code changes only
its imports::

    from datetime import timedelta

    from dbosify import activity, workflow  # was: from temporalio import activity, workflow
    from dbosify.client import Client       # was: from temporalio.client import Client
    from dbosify.worker import Worker       # was: from temporalio.worker import Worker

    @activity.defn
    async def greet(name: str) -> str:
        return f"Hello, {name}!"

    @workflow.defn
    class Greeting:
        @workflow.run
        async def run(self, name: str) -> str:
            return await workflow.execute_activity(
                greet, name, start_to_close_timeout=timedelta(seconds=10)
            )

    async def main() -> None:
        client = await Client.connect("localhost:7233")  # the configured database, or SQLite
        async with Worker(client, task_queue="q", workflows=[Greeting], activities=[greet]):
            print(await client.execute_workflow(Greeting.run, "World", id="g-1", task_queue="q"))

``dbosify.workflow``, ``dbosify.activity``, ``dbosify.common``, ``dbosify.exceptions`` and
``dbosify.converter`` re-export temporalio's own objects, so types, decorators and exceptions are
the very same as temporalio's. Every other module of temporalio is importable under the same name
(``dbosify.envconfig``, ``dbosify.api.common.v1``, ``dbosify.contrib.pydantic``,
``dbosify.runtime`` ...) and *is* temporalio's module; only ``client``, ``worker``, ``testing``
and ``service`` are dbosify's own, with temporalio's names.

Importing this package imports nothing else: the client, the worker and the engine load only when
their modules are imported.
"""

__version__ = "0.1.0"

# dbosify's own errors (bad database URL, unreachable database, a second database in one
# process); everything Temporal raises keeps temporalio's types (dbosify.exceptions).
from dbosify import _aliases
from dbosify._exceptions import ConfigurationError, DatabaseError, DbosifyError

# ``import dbosify.X`` gives ``temporalio.X`` for every module dbosify has no own version of.
_aliases.install()

__all__ = ["ConfigurationError", "DatabaseError", "DbosifyError", "__version__"]
