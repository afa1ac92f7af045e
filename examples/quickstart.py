"""Quickstart: a Temporal workflow with activities, run durably on the embedded SQLite default.

    python examples/quickstart.py

The code is Temporal's; only the imports say ``dbosify``. With no database configured, runs are
stored in ``.dbosify/dbosify.sqlite`` under the current directory; set ``DBOSIFY_DATABASE_URL``
(e.g. ``postgresql://postgres@localhost:5432/app``) to use Postgres instead.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.common import RetryPolicy
from dbosify.exceptions import ApplicationError, ApplicationErrorCategory
from dbosify.worker import Worker

_flaky_calls: dict[str, int] = {}


@dataclass
class Order:
    order_id: str
    items: list[str]


@activity.defn
async def reserve_stock(order: Order) -> int:
    return len(order.items)


@activity.defn
async def charge_card(order: Order) -> str:
    # Fails on the first attempt to show a retry recorded in the history.
    _flaky_calls[order.order_id] = _flaky_calls.get(order.order_id, 0) + 1
    if _flaky_calls[order.order_id] == 1:
        # BENIGN: an expected, retried failure, logged quietly (as in temporalio).
        raise ApplicationError("payment service timed out",
                               category=ApplicationErrorCategory.BENIGN)
    return f"receipt-{order.order_id}"


@workflow.defn
class ProcessOrder:
    @workflow.run
    async def run(self, order: Order) -> str:
        reserved = await workflow.execute_activity(
            reserve_stock, order, start_to_close_timeout=timedelta(seconds=10))
        await workflow.sleep(timedelta(milliseconds=200))  # a durable timer
        receipt = await workflow.execute_activity(
            charge_card, order, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))
        return f"{reserved} item(s) reserved, {receipt}"


async def main() -> None:
    client = await Client.connect()  # no URL: the embedded SQLite file
    async with Worker(client, task_queue="orders", workflows=[ProcessOrder],
                      activities=[reserve_stock, charge_card]):
        order = Order(order_id=uuid.uuid4().hex[:8], items=["apple", "pear"])
        handle = await client.start_workflow(ProcessOrder.run, order,
                                             id=f"order-{order.order_id}", task_queue="orders")
        print("result:", await handle.result())
        print("history:")
        async for event in handle.fetch_history_events():
            name = (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
            extra = ""
            if event.HasField("activity_task_started_event_attributes"):
                extra = f"  attempt {event.activity_task_started_event_attributes.attempt}"
            print(f"  {event.event_id:3d}  {event.event_time.ToJsonString()}  {name}{extra}")


if __name__ == "__main__":
    asyncio.run(main())
