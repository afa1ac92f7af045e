"""Usage mistakes exit 2, failures exit 1: each one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbosify.history import RUN_COLUMNS as HISTORY_RUN_COLUMNS
from tests.cli.conftest import invoke

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/dbosify"


@pytest.mark.parametrize("args", [
    ("runs",), ("result", "x"), ("show", "x"), ("start", "Greet", '"a"'), ("cancel", "x"),
    ("schedule", "list"), ("signal", "x", "s"),
    ("worker", str(Path(__file__).with_name("app.py"))),
])
def test_unreachable_database_is_one_line_exit_1(args: tuple[str, ...]) -> None:
    out = invoke(*args, "--database", UNREACHABLE)
    assert out.exit_code == 1, out
    assert out.stderr.startswith("dbosify: error: cannot reach the database "
                                 "postgresql://nobody@127.0.0.1:1/dbosify"), out.stderr
    assert len(out.stderr.splitlines()) == 1
    assert out.stdout == ""


@pytest.mark.parametrize(("args", "line"), [
    (("start", "Greet", "{not json"),
     "dbosify: error: argument '{not json' is not a JSON value (strings: '\"text\"', objects: "
     "'{\"key\": 1}')"),
    (("runs", "--bogus"),
     "dbosify runs: error: No such option '--bogus'. (see dbosify runs --help)"),
    (("nothing",), "dbosify: error: No such command 'nothing'. (see dbosify --help)"),
    (("runs", "WorkflowType ="),
     "dbosify: error: query 'WorkflowType =': invalid visibility query at position 14: "
     "expected a value after '=', found end of query"),
    (("result",), "dbosify result: error: Missing argument 'ID'. (see dbosify result --help)"),
    (("runs", "--database", "mysql://x/y"),
     "dbosify: error: unsupported database URL scheme 'mysql' in 'mysql://x/y': dbosify runs "
     "on 'postgresql://...' or 'sqlite:///...'"),
])
def test_usage_mistakes_exit_2(args: tuple[str, ...], line: str, tmp_path: Path) -> None:
    out = invoke(*args)
    assert (out.exit_code, out.stderr, out.stdout) == (2, line + "\n", "")
    assert not (tmp_path / ".dbosify").exists()  # nothing written


def test_task_queue_and_database_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dbosify]\ndatabase = "sqlite:///team.sqlite"\ntask_queue = "etl"\n')
    out = invoke("runs")
    assert (out.exit_code, out.stdout) == (0, "no runs\n")
    assert (tmp_path / "team.sqlite").is_file()
    from dbosify.cli._common import task_queue

    assert task_queue(None) == "etl" and task_queue("q") == "q"
    (tmp_path / "pyproject.toml").write_text("[tool.dbosify]\n")
    assert task_queue(None) == "dbosify"


def test_embedded_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = invoke("runs")
    assert (out.exit_code, out.stdout) == (0, "no runs\n")
    assert (tmp_path / ".dbosify" / "dbosify.sqlite").is_file()
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", UNREACHABLE)
    assert invoke("runs").exit_code == 1


def test_cli_rows_have_the_notebook_columns() -> None:
    from dbosify.cli._read import RUN_COLUMNS

    assert RUN_COLUMNS == HISTORY_RUN_COLUMNS
