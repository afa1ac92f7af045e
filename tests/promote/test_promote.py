"""dbosify promote: what it reads from a notebook, what it writes, the schedule it keeps."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dbosify.cli._worker import definitions, load_module
from dbosify.client import Client, ScheduleActionStartWorkflow
from tests.cli.conftest import ainvoke, invoke

CELL = '''%%workflow
from datetime import timedelta

from dbosify import activity, workflow


@activity.defn
def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Shout:
    @workflow.run
    async def run(self, params: dict) -> str:
        return await workflow.execute_activity(
            shout, params["text"], start_to_close_timeout=timedelta(seconds=10))
'''

TWO_ARGS = '''%%workflow
from dbosify import workflow


@workflow.defn
class Pair:
    @workflow.run
    async def run(self, a: int, b: int) -> int:
        return a + b
'''

PARAMETERS = 'text = "hello"\nlimit = 3  # a comment\n_private = 1\n'
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/dbosify"


def notebook(path: Path, *cells: str | tuple[str, list[str]]) -> Path:
    """A .ipynb with these code cells (a tuple gives a cell's tags), plus a markdown cell."""
    out: list[dict[str, Any]] = [{"cell_type": "markdown", "metadata": {},
                                  "source": ["# a notebook\n", "%%workflow in markdown\n"]}]
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        out.append({"cell_type": "code", "execution_count": None, "outputs": [],
                    "metadata": {"tags": tags} if tags else {},
                    "source": source.splitlines(True)})
    path.write_text(json.dumps({"cells": out, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_module_only_is_deterministic_and_importable(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "report.ipynb", "import os  # an ordinary cell",
                  (PARAMETERS, ["parameters"]), CELL)
    out = invoke("promote", str(nb))
    assert out.exit_code == 0, out.stderr
    assert out.stdout.splitlines() == [
        "wrote pipelines/report/pipeline.py", "wrote pipelines/report/README.md",
        "serve it: dbosify worker pipelines/report/pipeline.py"]
    module_path = tmp_path / "pipelines" / "report" / "pipeline.py"
    first = module_path.read_bytes()
    readme = (tmp_path / "pipelines" / "report" / "README.md").read_text()
    assert "dbosify worker pipelines/report/pipeline.py" in readme
    assert "import os" not in first.decode()  # only %%workflow and parameters cells

    out = invoke("promote", str(nb))
    assert out.stdout.splitlines()[:2] == ["unchanged pipelines/report/pipeline.py",
                                           "unchanged pipelines/report/README.md"]
    assert module_path.read_bytes() == first

    module = load_module(str(module_path))
    workflows, activities = definitions(module)
    assert [w.__name__ for w in workflows] == ["Shout"]
    assert [a.__name__ for a in activities] == ["shout"]
    assert module.PARAMETERS == {"text": "hello", "limit": 3}
    assert module.ARGS == [{"text": "hello", "limit": 3}]  # run takes one parameter
    assert module.WORKFLOW == "Shout" and module.TASK_QUEUE == "dbosify"
    assert module.SCHEDULE is None and module.SCHEDULE_ID == "promoted-report"


def test_arguments_rules(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "pair.ipynb", (PARAMETERS, ["parameters"]), TWO_ARGS)
    assert invoke("promote", str(nb), "--output", "a").exit_code == 0
    assert load_module("a/pipeline.py").ARGS == []  # run takes two: nothing by default
    assert invoke("promote", str(nb), "--output", "b", "--args", "[1, 2]").exit_code == 0
    assert load_module("b/pipeline.py").ARGS == [1, 2]
    out = invoke("promote", str(nb), "--output", "c", "--args", '{"a": 1}')
    assert (out.exit_code, out.stderr) == (2, "dbosify: error: --args must be a JSON array of "
                                              "the workflow's positional arguments, not dict: "
                                              "write '[...]'\n")
    out = invoke("promote", str(nb), "--output", "c", "--args", "[1,")
    assert out.exit_code == 2 and out.stderr.startswith("dbosify: error: --args '[1,' is not JSON")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("cells", "options", "line"), [
    (("x = 1",), (), "{nb} has no %%workflow cell: promotion takes the workflows and activities "
                     "defined in cells that start with %%workflow"),
    ((CELL,), ("--schedule", "61 * * * *"),
     "--schedule '61 * * * *' is not a cron string (minute range 61-61 is outside 0-59); write five "
     "fields like '0 6 * * *' (06:00 daily) or '@daily'"),
    ((CELL,), ("--every", "5 minutes"),
     "--every '5 minutes' is not a duration: write a positive number and a unit, like 30s, 5m, "
     "1h or 1d"),
    ((CELL,), ("--every", "1h", "--schedule", "@daily"), "give --schedule or --every, not both"),
    ((CELL, TWO_ARGS), ("--every", "1h"),
     "the notebook defines 2 workflows (Pair, Shout): name the one to schedule with "
     "--workflow TYPE"),
    ((CELL,), ("--workflow", "Nope"),
     "--workflow 'Nope': the notebook's %%workflow cells define Shout"),
    ((CELL, CELL.replace("def shout", "def shout2")), (),
     "cells 2 and 3 both define workflow 'Shout': a module holds one; keep one cell"),
    (("%%workflow --bogus\nx = 1",), (),
     "cell 2: unknown option '--bogus' in '%%workflow --bogus' (%%workflow takes only "
     "--task-queue Q)"),
    (("%%workflow\nx = 1",), (),
     "cell 2: this %%workflow cell defines no @workflow.defn class and no @activity.defn "
     "function; put other code in an ordinary cell"),
    ((("import datetime\nday = datetime.date(2024, 1, 1)", ["parameters"]), CELL), (),
     "parameter 'day' (cell 2) is a date, which a schedule cannot carry: make it a string, "
     "number, bool, list or dict"),
])
def test_bad_input_is_one_line_and_writes_nothing(
        tmp_path: Path, cells: tuple[Any, ...], options: tuple[str, ...], line: str) -> None:
    nb = notebook(tmp_path / "bad.ipynb", *cells)
    out = invoke("promote", str(nb), *options, "--database", f"sqlite:///{tmp_path}/db.sqlite")
    assert (out.exit_code, out.stderr, out.stdout) == (
        2, "dbosify: error: " + line.format(nb=nb) + "\n", "")
    assert not (tmp_path / "pipelines").exists()
    assert not (tmp_path / "db.sqlite").exists()


def test_unreachable_database_writes_nothing(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "report.ipynb", CELL)
    out = invoke("promote", str(nb), "--every", "1h", "--database", UNREACHABLE)
    assert out.exit_code == 1
    assert out.stderr.startswith("dbosify: error: cannot reach the database ")
    assert len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "pipelines").exists()


def test_task_queue_header_and_future_import(tmp_path: Path) -> None:
    cell = CELL.replace("%%workflow", "%%workflow --task-queue etl\nfrom __future__ import "
                                      "annotations\n")
    nb = notebook(tmp_path / "fut.ipynb", cell, TWO_ARGS)
    out = invoke("promote", str(nb), "--task-queue", "etl")
    assert out.exit_code == 0, out.stderr
    assert out.stdout.splitlines()[-1] == \
        "serve it: dbosify worker pipelines/fut/pipeline.py --task-queue etl"
    text = (tmp_path / "pipelines" / "fut" / "pipeline.py").read_text()
    assert text.count("from __future__ import annotations") == 1
    module = load_module("pipelines/fut/pipeline.py")
    assert module.WORKFLOW is None and module.TASK_QUEUE == "etl"
    assert sorted(w.__name__ for w in definitions(module)[0]) == ["Pair", "Shout"]


async def test_schedule_is_created_kept_and_updated(database: str, tmp_path: Path) -> None:
    nb = notebook(tmp_path / "daily.ipynb", (PARAMETERS, ["parameters"]), CELL)
    out = await ainvoke("promote", str(nb), "--every", "1h", "--database", database)
    assert out.exit_code == 0, out.stderr
    assert out.stdout.splitlines()[2] == ("schedule 'promoted-daily' created (every 1h, starts "
                                          "Shout on task queue 'dbosify')")
    client = await Client.connect(database)
    try:
        handle = client.get_schedule_handle("promoted-daily")
        first = await handle.describe()
        action = first.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue, action.id) == \
            ("Shout", "dbosify", "promoted-daily")
        assert client.data_converter.payload_converter.from_payloads(list(action.args)) == \
            [{"text": "hello", "limit": 3}]
        assert first.schedule.spec.intervals[0].every == timedelta(hours=1)

        out = await ainvoke("promote", str(nb), "--every", "1h", "--database", database)
        assert out.stdout.splitlines()[:3] == [
            "unchanged pipelines/daily/pipeline.py", "unchanged pipelines/daily/README.md",
            "schedule 'promoted-daily' unchanged (every 1h, starts Shout on task queue "
            "'dbosify')"]
        again = await handle.describe()
        assert again.info.last_updated_at == first.info.last_updated_at

        out = await ainvoke("promote", str(nb), "--schedule", "0 6 * * *", "--database",
                            database)
        assert out.exit_code == 0, out.stderr
        assert out.stdout.splitlines()[0] == "wrote pipelines/daily/pipeline.py"
        assert "schedule 'promoted-daily' updated (cron 0 6 * * *" in out.stdout
        updated = await handle.describe()
        assert not updated.schedule.spec.intervals
        assert updated.schedule.spec.cron_expressions == ["0 6 * * *"] or \
            updated.schedule.spec.calendars
        schedules = [s.id async for s in await client.list_schedules()]
        assert schedules == ["promoted-daily"]
    finally:
        await client.close()
