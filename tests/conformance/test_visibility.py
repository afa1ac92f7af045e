"""Visibility through the client: list/count queries, search attributes and memos.

Each test runs on SQLite and on Postgres through the ``client`` fixture.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.service import RPCError

from dbosify import workflow
from dbosify.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from dbosify.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

Q = "vis-q"
OTHER_Q = "vis-other"

CUSTOMER = SearchAttributeKey.for_keyword("CustomerId")
AMOUNT = SearchAttributeKey.for_int("Amount")
SCORE = SearchAttributeKey.for_float("Score")
VIP = SearchAttributeKey.for_bool("Vip")
DUE = SearchAttributeKey.for_datetime("DueAt")
TAGS = SearchAttributeKey.for_keyword_list("Tags")
NOTE = SearchAttributeKey.for_text("Note")
STAGE = SearchAttributeKey.for_keyword("Stage")


@workflow.defn
class Order:
    """Marks its progress in a search attribute and its memo, then waits for ``ship``."""

    def __init__(self) -> None:
        self.shipped = False

    @workflow.run
    async def run(self, fail: bool) -> str:
        workflow.upsert_search_attributes([STAGE.value_set("packing"), AMOUNT.value_set(250)])
        workflow.upsert_memo({"progress": "packing", "note": None})
        await workflow.wait_condition(lambda: self.shipped)
        workflow.upsert_search_attributes([STAGE.value_set("shipped")])
        if fail:
            raise ApplicationError("lost in transit", non_retryable=True)
        return "shipped"

    @workflow.signal
    def ship(self) -> None:
        self.shipped = True

    @workflow.query
    def ready(self) -> bool:
        return True


@workflow.defn
class Quick:
    @workflow.run
    async def run(self) -> str:
        return "done"


async def _ids(client: Client, query: str) -> list[str]:
    return sorted([w.id async for w in client.list_workflows(query)])


async def _populate(client: Client) -> dict[str, WorkflowHandle[Order, str]]:
    """Three orders (one left running, one completed, one failed) and two quick runs."""
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    handles: dict[str, WorkflowHandle[Order, str]] = {}
    for i, (name, vip) in enumerate([("order-a", True), ("order-b", False), ("order-c", False)]):
        handles[name] = await client.start_workflow(
            Order.run, name == "order-c", id=name, task_queue=Q,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(CUSTOMER, f"cust-{i % 2}"),
                SearchAttributePair(AMOUNT, 100 * (i + 1)),
                SearchAttributePair(SCORE, 0.5 + i), SearchAttributePair(VIP, vip),
                SearchAttributePair(DUE, due), SearchAttributePair(TAGS, ["red", f"t{i}"]),
                SearchAttributePair(NOTE, f"fragile box {i}"),
            ]),
            memo={"owner": f"owner-{i}", "items": [i, i + 1]})
    for handle in handles.values():
        assert await handle.query(Order.ready)  # Upserts of the first task are applied.
    await handles["order-b"].signal(Order.ship)
    await handles["order-c"].signal(Order.ship)
    assert await handles["order-b"].result() == "shipped"
    with pytest.raises(WorkflowFailureError):
        await handles["order-c"].result()
    async with Worker(client, task_queue=OTHER_Q, workflows=[Quick]):
        await client.execute_workflow(Quick.run, id="quick-1", task_queue=OTHER_Q)
        await client.execute_workflow(Quick.run, id="quick-2", task_queue=OTHER_Q)
    return handles


async def test_builtin_filters(client: Client) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    async with Worker(client, task_queue=Q, workflows=[Order]):
        await _populate(client)
        after = datetime.now(timezone.utc) + timedelta(seconds=1)

        assert await _ids(client, "") == ["order-a", "order-b", "order-c", "quick-1", "quick-2"]
        assert await _ids(client, "WorkflowId = 'order-b'") == ["order-b"]
        assert await _ids(client, "WorkflowId STARTS_WITH 'quick-'") == ["quick-1", "quick-2"]
        assert await _ids(client, "WorkflowType = 'Quick'") == ["quick-1", "quick-2"]
        assert await _ids(client, "ExecutionStatus = 'Running'") == ["order-a"]
        assert await _ids(client, "ExecutionStatus = 'Failed'") == ["order-c"]
        assert await _ids(client, "ExecutionStatus != 'Running' AND TaskQueue = 'vis-q'") == \
            ["order-b", "order-c"]
        assert await _ids(client, f"TaskQueue = '{OTHER_Q}'") == ["quick-1", "quick-2"]
        assert await _ids(client, "WorkflowType = 'Order' AND (WorkflowId = 'order-a' OR "
                                  "ExecutionStatus = 'Completed')") == ["order-a", "order-b"]
        start, end = before.isoformat(), after.isoformat()
        assert len(await _ids(client, f"StartTime BETWEEN '{start}' AND '{end}'")) == 5
        assert await _ids(client, f"StartTime > '{end}'") == []
        assert len(await _ids(client, f"StartTime >= '{start}' AND CloseTime IS NOT NULL")) == 4

        assert (await client.count_workflows()).count == 5
        assert (await client.count_workflows("WorkflowType = 'Order'")).count == 3
        grouped = await client.count_workflows("GROUP BY ExecutionStatus")
        assert grouped.count == 5
        groups = {tuple(g.group_values): g.count for g in grouped.groups}
        assert groups == {("Running",): 1, ("Completed",): 3, ("Failed",): 1}
        await client.get_workflow_handle("order-a").terminate()


async def test_listed_executions_carry_their_record(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Order]):
        await _populate(client)
        listed: list[WorkflowExecution] = [
            w async for w in client.list_workflows("WorkflowId = 'order-b'")]
        await client.get_workflow_handle("order-a").terminate()
    [run] = listed
    assert run.workflow_type == "Order" and run.task_queue == Q
    assert run.status == WorkflowExecutionStatus.COMPLETED
    assert run.close_time is not None and run.close_time >= run.start_time
    assert run.typed_search_attributes.get(CUSTOMER) == "cust-1"
    assert run.typed_search_attributes.get(STAGE) == "shipped"
    assert await run.memo() == {"owner": "owner-1", "items": [1, 2], "progress": "packing"}


async def test_custom_search_attributes(client: Client) -> None:
    async with Worker(client, task_queue=Q, workflows=[Order]):
        await _populate(client)

        assert await _ids(client, "CustomerId = 'cust-0'") == ["order-a", "order-c"]
        assert await _ids(client, "CustomerId IN ('cust-1', 'nobody')") == ["order-b"]
        # Amount was set at start, then upserted to 250 by every order's first task.
        assert await _ids(client, "Amount = 250") == ["order-a", "order-b", "order-c"]
        assert await _ids(client, "Amount < 250") == []
        assert await _ids(client, "Score >= 1.5") == ["order-b", "order-c"]
        assert await _ids(client, "Vip = true") == ["order-a"]
        assert await _ids(client, "DueAt = '2030-01-02T03:04:05Z'") == \
            ["order-a", "order-b", "order-c"]
        assert await _ids(client, "Tags = 't1'") == ["order-b"]
        assert await _ids(client, "Tags = 'red' AND Stage = 'packing'") == ["order-a"]
        assert await _ids(client, "Stage = 'shipped'") == ["order-b", "order-c"]
        assert await _ids(client, "Stage IS NULL") == ["quick-1", "quick-2"]
        assert (await client.count_workflows("Vip = false AND Stage = 'shipped'")).count == 2

        desc = await client.get_workflow_handle("order-a").describe()
        attrs = desc.typed_search_attributes
        assert attrs.get(CUSTOMER) == "cust-0"
        assert attrs.get(AMOUNT) == 250
        assert attrs.get(SCORE) == 0.5
        assert attrs.get(VIP) is True
        assert attrs.get(DUE) == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        assert attrs.get(TAGS) == ["red", "t0"]
        assert attrs.get(NOTE) == "fragile box 0"
        assert attrs.get(STAGE) == "packing"
        assert await desc.memo() == {"owner": "owner-0", "items": [0, 1], "progress": "packing"}
        assert await desc.memo_value("owner") == "owner-0"
        await client.get_workflow_handle("order-a").terminate()


async def test_malformed_query_names_the_position(client: Client) -> None:
    with pytest.raises(RPCError) as info:
        await client.count_workflows("WorkflowId = 'x' AND AND")
    message = str(info.value)
    assert "position 21" in message
    with pytest.raises(RPCError, match="position"):
        [w async for w in client.list_workflows("WorkflowId = 'unterminated")]
    with pytest.raises(RPCError, match="position"):
        await client.count_workflows("WorkflowId = 'a' ; DROP TABLE dbosify_runs")


async def test_hostile_query_is_matched_literally(client: Client) -> None:
    hostile = "x' OR '1'='1"
    async with Worker(client, task_queue=OTHER_Q, workflows=[Quick]):
        await client.execute_workflow(Quick.run, id=hostile, task_queue=OTHER_Q)
        await client.execute_workflow(Quick.run, id="plain", task_queue=OTHER_Q)
    escaped = hostile.replace("'", "''")
    assert await _ids(client, f"WorkflowId = '{escaped}'") == [hostile]
    assert await _ids(client, "WorkflowId = 'x\\' OR \\'1\\'=\\'1'") == [hostile]
    assert await _ids(client, "WorkflowId = 'plain'' OR ''1''=''1'") == []
    # A comment or a sub-select is refused, and the table is intact afterwards.
    for query in ("WorkflowId = 'plain' -- '", "WorkflowId IN (SELECT run_id FROM dbosify_runs)",
                  "WorkflowId = 'plain' /* x */"):
        with pytest.raises(RPCError):
            await client.count_workflows(query)
    assert (await client.count_workflows()).count == 2
