"""The magics through a real IPython InteractiveShell: syntax, ARG parsing, one-line usage
errors, and start/--wait/signal/query/update/cancel/terminate/result on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import dbosify.notebook as nb
from dbosify.magics import parse_args
from tests.notebook.conftest import COUNTER

ECHO = '''
from dbosify import workflow

@workflow.defn
class Echo:
    @workflow.run
    async def run(self, *args: object) -> list:
        return list(args)
'''


@pytest.fixture
def ip(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A real InteractiveShell with ``%load_ext dbosify.magics`` on the test's database."""
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", database)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dbosify.magics")
    try:
        yield shell
    finally:
        shell.run_line_magic("unload_ext", "dbosify.magics")
        for name in ("Counter", "add_one", "Echo", "h", "x", "INCREMENT", "LOG"):
            shell.user_ns.pop(name, None)


def _cell(ip: InteractiveShell, source: str, line: str = "") -> None:
    ip.run_cell_magic("workflow", line, source)


def _usage_error(ip: InteractiveShell, line: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a line as a cell; it must fail with a UsageError shown as one line."""
    capsys.readouterr()
    result = ip.run_cell(line)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_parse_args_as_the_issue_says() -> None:
    ns = {"x": [1, 2]}
    assert parse_args(["3", "Ann", "Ann", "x", "a b", "{'k': 1}", "1 +", "len"], ns) == \
        [3, "Ann", "Ann", [1, 2], "a b", {"k": 1}, "1 +", len]
    with pytest.raises(UsageError, match="ZeroDivisionError"):
        parse_args(["1/0"], ns)


def test_start_wait_quotes_and_expressions(ip: InteractiveShell) -> None:
    _cell(ip, ECHO)
    ip.user_ns["x"] = {"a": 1}
    value = ip.run_line_magic("workflow", """start Echo 3 Ann 'Ann' x "two words" 2*3 --wait""")
    assert value == [3, "Ann", "Ann", {"a": 1}, "two words", 6]


def test_start_signal_query_update_result(ip: InteractiveShell, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _cell(ip, COUNTER)
    assert "Counter, add_one (version" in capsys.readouterr().out
    assert "Counter" in ip.user_ns and "add_one" in ip.user_ns
    handle = ip.run_line_magic("workflow", "start Counter 1 --id c1 --task-queue dbosify")
    assert isinstance(handle, nb.RunHandle) and handle.id == "c1"
    assert "<table" in handle._repr_html_()
    ip.user_ns["h"] = handle
    _wait_for(lambda: ip.run_line_magic("workflow", "query h waiting") is True)
    assert ip.run_line_magic("workflow", "update c1 bump 21") == 42
    capsys.readouterr()
    assert ip.run_line_magic("workflow", "signal c1 go") is None
    assert capsys.readouterr().out.strip() == "dbosify: signal 'go' sent to 'c1'"
    assert ip.run_line_magic("workflow", "result c1 --timeout 20") == 3


def test_cancel_terminate_and_status(ip: InteractiveShell,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _cell(ip, COUNTER)
    ip.run_line_magic("workflow", "start Counter 1 --id k1")
    ip.run_line_magic("workflow", "start Counter 1 --id t1")
    _wait_for(lambda: ip.run_line_magic("workflow", "query k1 waiting") is True)
    status = ip.run_line_magic("dbosify", "status")
    assert {r["workflow_id"] for r in status.in_flight} == {"k1", "t1"}
    capsys.readouterr()
    ip.run_line_magic("workflow", "cancel k1")
    ip.run_line_magic("workflow", "terminate t1 --reason 'no longer needed'")
    assert capsys.readouterr().out.splitlines() == [
        "dbosify: cancellation requested for 'k1'",
        "dbosify: terminated 't1' (no longer needed)"]
    _wait_for(lambda: not ip.run_line_magic("dbosify", "status").in_flight, timeout=30)


def test_usage_mistakes_are_one_line(ip: InteractiveShell,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _cell(ip, COUNTER)
    assert "unknown workflow type 'Nope'" in _usage_error(ip, "%workflow start Nope", capsys)
    assert "unrecognized arguments: --bogus" in _usage_error(
        ip, "%workflow start Counter 1 --bogus", capsys)
    assert "'missing'" in _usage_error(ip, "%workflow signal missing go", capsys)
    assert "'missing'" in _usage_error(ip, "%workflow result missing", capsys)
    assert "'missing'" in _usage_error(ip, "%workflow history missing", capsys)
    assert "unknown command 'strat'" in _usage_error(ip, "%workflow strat Counter", capsys)
    assert "give a command" in _usage_error(ip, "%workflow", capsys)
    assert "invalid float value" in _usage_error(ip, "%workflow result c1 --timeout soon",
                                                 capsys)
    assert "the following arguments are required" in _usage_error(ip, "%workflow signal c1",
                                                                  capsys)
    assert "No closing quotation" in _usage_error(ip, "%workflow start Counter 'oops", capsys)
    assert "unknown command 'conect'" in _usage_error(ip, "%dbosify conect", capsys)
    ip.run_line_magic("workflow", "start Counter 1 --id dup")
    assert "already running" in _usage_error(ip, "%workflow start Counter 1 --id dup", capsys)
    ip.run_line_magic("workflow", "terminate dup")
    capsys.readouterr()
    result = ip.run_cell("%%workflow --task-queue\nx = 1\n")
    assert isinstance(result.error_in_exec, UsageError)
    result = ip.run_cell("%%workflow\nx = 1\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "defines no @workflow.defn" in str(result.error_in_exec)


def test_result_timeout_is_one_line_and_the_run_goes_on(
        ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    _cell(ip, COUNTER)
    ip.run_line_magic("workflow", "start Counter 1 --id slow")
    assert "the run goes on" in _usage_error(ip, "%workflow result slow --timeout 0.2", capsys)
    ip.run_line_magic("workflow", "signal slow go")
    assert ip.run_line_magic("workflow", "result slow") == 3


def test_config_and_connect(ip: InteractiveShell, database: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("config", "Dbosify.task_queue = 'other-queue'")
    cell = ip.run_cell_magic("workflow", "", ECHO)
    assert cell is None
    assert "task queue other-queue" in capsys.readouterr().out
    assert ip.run_line_magic("workflow", "start Echo 1 --wait") == [1]
    ip.run_line_magic("dbosify", f"connect {database} --notebook named")
    out = capsys.readouterr().out
    assert "(notebook named)" in out and "no saved definitions" in out
    ip.run_line_magic("config", "Dbosify.task_queue = None")


def test_runs_history_and_replay(ip: InteractiveShell) -> None:
    _cell(ip, ECHO)
    ip.run_line_magic("workflow", "start Echo 7 --id e1 --wait")
    runs = ip.run_line_magic("workflow", "runs WorkflowType = 'Echo'")
    assert list(runs["id"]) == ["e1"]
    history = ip.run_line_magic("workflow", "history e1")
    assert history["event_type"].iloc[-1] == "WORKFLOW_EXECUTION_COMPLETED"
    replay = ip.run_line_magic("workflow", "replay e1")
    assert not replay["diverged"].any()
    picture = ip.run_line_magic("workflow", "timeline e1")
    assert "<svg" in picture._repr_html_()


def test_watch_an_id_or_a_query(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    from dbosify.widgets import RunPanel, RunsMonitor

    _cell(ip, ECHO)
    ip.run_line_magic("workflow", "start Echo 1 --id w1 --wait")
    panel = ip.run_line_magic("workflow", "watch w1")
    monitor = ip.run_line_magic("workflow", "watch WorkflowType = 'Echo'")
    everything = ip.run_line_magic("workflow", "watch")
    try:
        assert isinstance(panel, RunPanel) and panel.handle.id == "w1"
        assert isinstance(monitor, RunsMonitor) and monitor.query == "WorkflowType = 'Echo'"
        assert isinstance(everything, RunsMonitor) and everything.query == ""
    finally:
        for widget in (panel, monitor, everything):
            widget.stop()
    assert "'nope'" in _usage_error(ip, "%workflow watch nope", capsys)


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def test_a_cell_that_cannot_be_served_is_one_line(ip: InteractiveShell,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    twice = ECHO + ECHO.replace("class Echo", "class Echo2").replace(
        "@workflow.defn", '@workflow.defn(name="Echo")')
    capsys.readouterr()
    result = ip.run_cell("%%workflow\n" + twice)
    assert isinstance(result.error_in_exec, UsageError)
    assert "defines two workflows named 'Echo' (Echo and Echo2)" in str(result.error_in_exec)


def test_load_ext_with_a_bad_database_says_so_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", "mysql://nowhere/db")
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "dbosify.magics")
        err = capsys.readouterr().err.strip()
        assert err.startswith("dbosify: not connected: unsupported database URL scheme 'mysql'")
        assert len(err.splitlines()) == 1
        assert "unsupported database URL scheme" in _usage_error(
            shell, "%dbosify connect mysql://nowhere/db", capsys)
    finally:
        shell.run_line_magic("unload_ext", "dbosify.magics")


def test_unknown_update_query_and_signal_names_are_one_line(
        ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    _cell(ip, COUNTER)
    ip.run_line_magic("workflow", "start Counter 1 --id u1")
    _wait_for(lambda: ip.run_line_magic("workflow", "query u1 waiting") is True)
    err = _usage_error(ip, "%workflow update u1 nope 1", capsys)
    assert "nope" in err and "update" in err, err
    err = _usage_error(ip, "%workflow query u1 nope", capsys)
    assert "nope" in err and "query" in err, err
    # Temporal accepts a signal of any name (it waits in the history for a handler), so the
    # magic sends it and says the workflow has no such handler yet.
    capsys.readouterr()
    ip.run_line_magic("workflow", "signal u1 nope")
    out = capsys.readouterr()
    assert "dbosify: signal 'nope' sent to 'u1'" in out.out
    assert "Traceback" not in out.err
    ip.run_line_magic("workflow", "terminate u1")
