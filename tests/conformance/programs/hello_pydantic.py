# ruff: noqa: UP031, I001  (Temporal's sample, kept as written)
"""Temporal's pydantic-converter sample (a temporalio program).

The test runs it with every ``temporalio`` replaced by ``dbosify`` and nothing else changed.
"""

import asyncio
import dataclasses
import uuid
from datetime import datetime, timedelta
from ipaddress import IPv4Address

from pydantic import BaseModel

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker


class MyPydanticModel(BaseModel):
    some_ip: IPv4Address
    some_date: datetime


@activity.defn
async def my_activity(models: list[MyPydanticModel]) -> list[MyPydanticModel]:
    activity.logger.info("Got models in activity: %s" % models)
    return [m.model_copy(update={"some_date": m.some_date + timedelta(days=1)}) for m in models]


@workflow.defn
class MyWorkflow:
    @workflow.run
    async def run(self, models: list[MyPydanticModel]) -> list[MyPydanticModel]:
        workflow.logger.info("Got models in workflow: %s" % models)
        return await workflow.execute_activity(
            my_activity, models, start_to_close_timeout=timedelta(minutes=1)
        )


@dataclasses.dataclass
class Outcome:
    ips: list[str]
    dates: list[str]


async def main() -> None:
    client = await Client.connect("localhost:7233", data_converter=pydantic_data_converter)
    async with Worker(
        client,
        task_queue="pydantic_converter-task-queue",
        workflows=[MyWorkflow],
        activities=[my_activity],
    ):
        result = await client.execute_workflow(
            MyWorkflow.run,
            [
                MyPydanticModel(some_ip=IPv4Address("127.0.0.1"),
                                some_date=datetime(2000, 1, 2, 3, 4, 5)),
                MyPydanticModel(some_ip=IPv4Address("127.0.0.2"),
                                some_date=datetime(2001, 2, 3, 4, 5, 6)),
            ],
            id=f"pydantic_converter-workflow-id-{uuid.uuid4()}",
            task_queue="pydantic_converter-task-queue",
        )
        assert all(isinstance(m, MyPydanticModel) for m in result)
        print(f"Result: {[(str(m.some_ip), m.some_date.isoformat()) for m in result]}")


if __name__ == "__main__":
    asyncio.run(main())
