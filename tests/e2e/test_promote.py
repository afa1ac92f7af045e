"""Promote a notebook, serve it with ``dbosify worker``, let its schedule fire.

notebooks/daily_report.ipynb is promoted in a copy of the project; the module it gives is the
one checked in under pipelines/daily_report/ byte for byte; with a 1-second schedule a
``dbosify worker`` subprocess runs it; ``dbosify runs`` lists the runs; their result is the
notebook's own run's; SIGTERM stops the worker with exit code 0.
"""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "daily_report.ipynb"
GOLDEN = ROOT / "pipelines" / "daily_report"

pytestmark = pytest.mark.slow


def dbosify(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dbosify.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def notebook_result(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What the notebook's own run of DailyReport returned (the notebook run by a kernel)."""
    import nbclient
    import nbformat

    folder = tmp_path_factory.mktemp("notebook")
    shutil.copy(NOTEBOOK, folder)
    nb = nbformat.read(folder / NOTEBOOK.name, as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    cell = next(c for c in nb.cells if c.cell_type == "code" and "report = %workflow" in c.source)
    return ast.literal_eval(cell.outputs[-1]["data"]["text/plain"])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's notebook in a project of its own (its pyproject.toml)."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'copy'\n")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, tmp_path / "notebooks")
    return tmp_path


def test_checked_in_module_is_the_promotion(project: Path) -> None:
    done = dbosify("promote", "notebooks/daily_report.ipynb", "--every", "1d",
                   "--database", f"sqlite:///{project}/golden.sqlite", cwd=project)
    assert done.returncode == 0, done.stderr
    for name in ("pipeline.py", "README.md"):
        assert (project / "pipelines" / "daily_report" / name).read_bytes() == \
            (GOLDEN / name).read_bytes(), f"pipelines/daily_report/{name} is not what " \
            "`dbosify promote notebooks/daily_report.ipynb --every 1d` writes: promote again"


def test_promote_worker_schedule_runs_sigterm(database: str, project: Path,
                                              notebook_result: Any) -> None:
    done = dbosify("promote", "notebooks/daily_report.ipynb", "--every", "1s",
                   "--database", database, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "schedule 'promoted-daily_report' created (every 1s" in done.stdout
    again = dbosify("promote", "notebooks/daily_report.ipynb", "--every", "1s",
                    "--database", database, cwd=project)
    assert "schedule 'promoted-daily_report' unchanged" in again.stdout, again.stderr

    worker = subprocess.Popen(
        [sys.executable, "-m", "dbosify.cli", "worker", "pipelines/daily_report/pipeline.py",
         "--database", database], cwd=project, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        completed: list[list[str]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            listed = dbosify("runs", "WorkflowType = 'DailyReport'", "--database", database,
                             cwd=project)
            assert listed.returncode == 0, listed.stderr
            rows = [line.split() for line in listed.stdout.splitlines()[2:]]
            completed = [row for row in rows if row[0] == "COMPLETED"]
            if len(completed) >= 2:
                break
            assert worker.poll() is None, "".join(lines)
            time.sleep(0.5)
        assert len(completed) >= 2, f"{listed.stdout}\n{''.join(lines)}"
        assert all(row[2].startswith("promoted-daily_report-") for row in completed)

        result = dbosify("result", completed[0][2], "--database", database, cwd=project)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == notebook_result

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, "".join(lines)
        reader.join(10)
        assert "stopped" in lines[-1]
        logged = [line for line in lines if "DailyReport promoted-daily_report-" in line]
        assert any(completed[0][2] in line and "completed in" in line for line in logged)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        dbosify("schedule", "delete", "promoted-daily_report", "--database", database,
                cwd=project)
