"""What the commands import: read-only ones (``runs``, ``show``, ``result``) stay off DBOS and the
engine (so they answer within a second, bench C1); none loads IPython, ipywidgets or pandas (a
headless worker)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dbosify.client import Client
from tests.cli.conftest import Q

PROBE = """
import json, sys
from dbosify.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
heavy = ["dbos", "dbosify.client", "dbosify._runtime._process", "temporalio.worker",
         "IPython", "ipywidgets", "pandas", "traitlets"]
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _probe(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.slow
def test_read_only_commands_do_not_import_dbos(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _probe("runs", "--database", url) == {"code": 0, "loaded": []}
    assert _probe("result", "nope", "--database", url) == {"code": 1, "loaded": []}


@pytest.mark.slow
async def test_show_and_result_of_a_run_do_not_import_dbos(database: str, served: Client
                                                           ) -> None:
    handle = await served.start_workflow("Greet", "Ann", id="g-imports", task_queue=Q)
    assert await handle.result() == "Hello, Ann!"
    for command in ("show", "result"):
        found = await asyncio.to_thread(_probe, command, "g-imports", "--database", database)
        assert found == {"code": 0, "loaded": []}, command


@pytest.mark.slow
def test_worker_loads_no_notebook_library() -> None:
    app = Path(__file__).with_name("app.py")
    code = (f"import sys\nfrom dbosify.cli._worker import definitions, load_module\n"
            f"import dbosify.worker, dbosify.client\n"
            f"workflows, activities = definitions(load_module({str(app)!r}))\n"
            f"assert workflows and activities\n"
            f"print([m for m in ('IPython', 'ipywidgets', 'pandas', 'traitlets') "
            f"if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
