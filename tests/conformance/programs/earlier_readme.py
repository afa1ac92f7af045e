"""The earlier dbosify's README example, as written (a program for the earlier dbosify).

A worker and a client both built from the URL in ``DBOS_SYSTEM_DATABASE_URL``; a sync activity
with no executor; the client used as an async context manager. ``EARLIER_CONFIG=1`` builds the
worker from a DBOS config dict instead of the URL, as the earlier README's second form does.
"""

import asyncio
import os
from datetime import timedelta

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.worker import Worker


@activity.defn
def say_hello(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class HelloWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            say_hello, name, start_to_close_timeout=timedelta(seconds=10)
        )


async def main() -> None:
    url = os.environ["DBOS_SYSTEM_DATABASE_URL"]
    if os.environ.get("EARLIER_CONFIG") == "1":
        target = {"name": "hello-app", "system_database_url": url}
    else:
        target = url
    worker = Worker(
        target,
        task_queue="hello-queue",
        workflows=[HelloWorkflow],
        activities=[say_hello],
    )
    async with worker:
        async with await Client.connect(url) as client:
            result = await client.execute_workflow(
                HelloWorkflow.run, "DBOS", id="hello-workflow", task_queue="hello-queue"
            )
            print(f"Result: {result}")


if __name__ == "__main__":
    asyncio.run(main())
