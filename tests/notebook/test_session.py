"""The notebook API without IPython: cells as modules, starting and driving runs, status."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError, TerminatedError

import dbosify.notebook as nb
from dbosify.notebook._output import route_output
from dbosify.notebook._session import Session
from tests.notebook.conftest import COUNTER


def _wait_until(predicate: Any, timeout: float = 10.0) -> None:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_cell_is_a_module_and_its_names_reach_the_namespace(session: Session,
                                                          namespace: dict[str, Any]) -> None:
    namespace["INCREMENT"] = 100  # The cell does not see the notebook's variables.
    cell = session.define(COUNTER, namespace=namespace)
    assert set(cell.workflows) == {"Counter"} and set(cell.activities) == {"add_one"}
    assert namespace["Counter"] is cell.workflows["Counter"]
    assert namespace["INCREMENT"] == 1
    assert "timedelta" not in namespace and "workflow" not in namespace
    assert namespace["add_one"](1) == 2


def test_start_signal_query_update_result(session: Session, tmp_path: Path) -> None:
    session.define(COUNTER)
    handle = session.start("Counter", 1, id="c1")
    _wait_until(lambda: session.query("c1", "waiting") is True)
    assert session.update("c1", "bump", 4) == 8
    session.signal("c1", "go")
    assert session.result("c1", timeout=20) == 3
    assert handle.wait(5) == 3
    assert "c1" in handle._repr_html_() and "COMPLETED" in handle._repr_html_()
    assert (tmp_path / "calls.log").read_text().splitlines() == ["add_one 1", "add_one 2"]


def test_cancel_and_terminate(session: Session) -> None:
    session.define(COUNTER)
    session.start("Counter", 1, id="t1")
    session.terminate("t1", reason="enough")
    with pytest.raises(WorkflowFailureError) as failed:
        session.result("t1", timeout=10)
    assert isinstance(failed.value.cause, TerminatedError)
    session.start("Counter", 1, id="k1")
    # Cancelled once parked on its signal: a cancel racing the first activity's completion
    # is an engine matter (see the report of issue 8), not the notebook API's.
    _wait_until(lambda: session.query("k1", "waiting") is True)
    session.cancel("k1")
    with pytest.raises(WorkflowFailureError) as failed:
        session.result("k1", timeout=10)
    assert isinstance(failed.value.cause, CancelledError)


def test_usage_mistakes_are_clear(session: Session) -> None:
    with pytest.raises(nb.NotebookUsageError, match="unknown workflow type 'Nope'"):
        session.start("Nope")
    with pytest.raises(nb.NotebookUsageError, match="'missing'"):
        session.signal("missing", "go")
    with pytest.raises(nb.NotebookUsageError, match="'missing'"):
        session.result("missing")
    with pytest.raises(nb.NotebookUsageError, match=r"defines no @workflow\.defn"):
        session.define("x = 1\n")
    session.define(COUNTER)
    session.start("Counter", 1, id="dup")
    with pytest.raises(nb.NotebookUsageError, match="already running"):
        session.start("Counter", 1, id="dup")
    session.terminate("dup")


def test_result_wait_stops_on_timeout_not_the_run(session: Session) -> None:
    session.define(COUNTER)
    session.start("Counter", 1, id="w1")
    with pytest.raises(TimeoutError, match="the run goes on"):
        session.result("w1", timeout=0.3)
    session.signal("w1", "go")
    assert session.result("w1", timeout=20) == 3


async def test_handle_works_on_the_callers_own_loop(session: Session) -> None:
    # A notebook's top-level ``await handle.result()`` runs on the kernel's loop, not the
    # background loop the worker runs on.
    session.define(COUNTER)
    handle = await _in_thread(lambda: session.start("Counter", 5, id="own-loop"))
    await handle.signal("go")
    assert await handle.result() == 7


async def _in_thread(fn: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn)


def test_workflow_output_goes_to_logging(capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture,
                                         session: Session) -> None:
    # capsys puts its own sys.stdout in place when the test body starts: route it again, as
    # connect() routes the kernel's stream.
    route_output()
    session.define('''
from dbosify import workflow

@workflow.defn
class Loud:
    @workflow.run
    async def run(self) -> str:
        print("hello from the workflow")
        return "done"
''')
    caplog.set_level("INFO", logger="dbosify.output")
    assert session.result(session.start("Loud"), timeout=20) == "done"
    assert "hello from the workflow" not in capsys.readouterr().out
    assert "hello from the workflow" in caplog.text
    print("cell output")  # The cell's own output still reaches the cell.
    assert "cell output" in capsys.readouterr().out
    assert threading.current_thread().name == "MainThread"


def test_status(session: Session) -> None:
    session.define(COUNTER)
    session.start("Counter", 1, id="s1")
    status = session.status()
    assert status.task_queues == ["dbosify"]
    assert ("Counter", "workflow", session.latest["Counter"].version) in status.definitions
    assert [r["workflow_id"] for r in status.in_flight] == ["s1"]
    assert "s1" in str(status) and "Counter" in status._repr_html_()
    session.terminate("s1")


def test_an_interrupt_stops_the_wait_not_the_run(session: Session) -> None:
    # What the kernel's interrupt button does: SIGINT to the kernel's main thread while a cell
    # waits for a result.
    import os
    import signal

    session.define(COUNTER)
    session.start("Counter", 1, id="i1")
    # As a kernel executing a cell does (a pytest-xdist worker ignores SIGINT otherwise).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            session.result("i1", timeout=30)
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    session.signal("i1", "go")
    assert session.result("i1", timeout=20) == 3


INGEST = '''
from dbosify import pipelines

class Squares(pipelines.IncrementalIngest):
    source = pipelines.IterableSource([{"n": n, "square": n * n} for n in range(25)])
    sink = pipelines.SqliteTable(SINK, "squares")
    batch_size = 10
'''


def test_a_cell_subclassing_a_pipeline_template_serves_its_activities(
        session: Session, tmp_path: Path) -> None:
    # The template's batch activities live in dbosify, not in the cell: the cell's worker
    # serves them without the cell naming them.
    import sqlite3

    sink = tmp_path / "sink.sqlite"
    cell = session.define(INGEST.replace("SINK", repr(str(sink))))
    assert {"Squares"} <= set(cell.workflows)
    session.start("Squares", id="squares")
    result = session.result("squares", timeout=30)
    assert result.rows == 25 and result.batches == 3
    with sqlite3.connect(sink) as conn:
        assert conn.execute("SELECT count(*), sum(square) FROM squares").fetchone() == (25, 4900)
