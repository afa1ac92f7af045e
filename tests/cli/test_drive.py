"""start, signal, query, update, cancel, terminate, result, runs and show, on both backends."""

from __future__ import annotations

import asyncio
import json

from dbosify.client import Client, WorkflowExecutionStatus
from tests.cli.conftest import Q, ainvoke


async def _status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(workflow_id).describe()).status


async def test_start_wait_result_runs_show(database: str, served: Client) -> None:
    out = await ainvoke("start", "Greet", '"Ann"', "--id", "g1", "--task-queue", Q,
                        "--database", database, "--wait")
    assert out.exit_code == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("started Greet id=g1 run_id=")
    assert out.stdout.splitlines()[-1] == '"Hello, Ann!"'
    assert await served.get_workflow_handle("g1").result() == "Hello, Ann!"

    out = await ainvoke("result", "g1", "--database", database)
    assert (out.exit_code, out.stdout) == (0, '"Hello, Ann!"\n')

    out = await ainvoke("runs", "--database", database)
    assert out.exit_code == 0
    header, _rule, row = out.stdout.splitlines()
    assert header.split() == ["STATUS", "TYPE", "ID", "START", "CLOSE", "DURATION", "TASK_QUEUE"]
    assert row.split()[:3] == ["COMPLETED", "Greet", "g1"]

    out = await ainvoke("show", "g1", "--database", database)
    assert out.exit_code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["EVENT_ID", "TIME", "EVENT_TYPE", "NAME"]
    kinds = [line.split()[3] for line in lines[2:]]
    assert kinds[0] == "WORKFLOW_EXECUTION_STARTED"
    assert "ACTIVITY_TASK_COMPLETED" in kinds
    assert kinds[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    assert any("greet" in line and "Hello, Ann!" in line for line in lines), out.stdout


async def test_signal_query_update_with_json_arguments(database: str, served: Client) -> None:
    out = await ainvoke("start", "Waiter", "5", "--id", "w1", "--task-queue", Q,
                        "--database", database)
    assert out.exit_code == 0, out.stderr
    out = await ainvoke("signal", "w1", "add", '{"a": [1, 2]}', "--database", database)
    assert (out.exit_code, out.stdout) == (0, "signal 'add' sent to 'w1'\n"), out.stderr
    out = await ainvoke("update", "w1", "add_many", "3", '"four"', "--database", database)
    assert (out.exit_code, out.stdout) == (0, "3\n")
    out = await ainvoke("query", "w1", "count", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "3\n")
    out = await ainvoke("signal", "w1", "finish", "--database", database)
    assert out.exit_code == 0
    out = await ainvoke("result", "w1", "--database", database, "--timeout", "30")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout) == [{"a": [1, 2]}, 3, "four"]


async def test_failed_run_exits_1(database: str, served: Client) -> None:
    out = await ainvoke("start", "Fails", "--id", "f1", "--task-queue", Q,
                        "--database", database, "--wait")
    assert out.exit_code == 1
    assert out.stderr.strip() == \
        "dbosify: error: workflow 'f1' failed: no data for today"
    out = await ainvoke("result", "f1", "--database", database)
    assert out.exit_code == 1
    assert len(out.stderr.splitlines()) == 1 and "no data for today" in out.stderr
    out = await ainvoke("runs", "ExecutionStatus = 'Failed'", "--database", database)
    assert [line.split()[:3] for line in out.stdout.splitlines()[2:]] == \
        [["FAILED", "Fails", "f1"]]


async def test_cancel_and_terminate(database: str, served: Client) -> None:
    for wid in ("c1", "t1"):
        out = await ainvoke("start", "Waiter", "9", "--id", wid, "--task-queue", Q,
                            "--database", database)
        assert out.exit_code == 0, out.stderr
    out = await ainvoke("cancel", "c1", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "cancel requested for 'c1'\n")
    out = await ainvoke("terminate", "t1", "--reason", "wrong input", "--database", database)
    assert (out.exit_code, out.stdout) == (0, "terminated 't1'\n")
    for _ in range(100):
        if await _status(served, "c1") == WorkflowExecutionStatus.CANCELED:
            break
        await asyncio.sleep(0.1)
    assert await _status(served, "c1") == WorkflowExecutionStatus.CANCELED
    assert await _status(served, "t1") == WorkflowExecutionStatus.TERMINATED
    out = await ainvoke("result", "t1", "--database", database)
    assert out.exit_code == 1
    assert out.stderr == "dbosify: error: workflow 't1' terminated: wrong input\n"


async def test_unknown_ids_are_one_line_exit_1(database: str, served: Client) -> None:
    for args in (("result", "nope"), ("show", "nope"), ("signal", "nope", "add", "1"),
                 ("query", "nope", "count"), ("cancel", "nope"), ("terminate", "nope")):
        out = await ainvoke(*args, "--database", database)
        assert out.exit_code == 1, (args, out)
        assert len(out.stderr.splitlines()) == 1, (args, out.stderr)
        assert "'nope'" in out.stderr and out.stderr.startswith("dbosify: error: "), out.stderr
