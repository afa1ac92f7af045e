"""A waiting run survives a kernel restart, through a real Jupyter kernel (issue 8's acceptance
scenario), on the embedded default and on Postgres; and the headless surface never imports the
notebook stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import empty_postgres, require_postgres

pytestmark = pytest.mark.slow

CELL = '''%%workflow
from datetime import timedelta
from pathlib import Path

from dbosify import activity, workflow


@activity.defn
def add_one(x: int) -> int:
    with Path("calls.log").open("a") as f:
        f.write(f"add_one({x})\\n")
    return x + 1


@workflow.defn
class Counter:
    def __init__(self) -> None:
        self.proceeding = False
        self.stage = "starting"

    @workflow.run
    async def run(self, x: int) -> int:
        y = await workflow.execute_activity(add_one, x,
                                            start_to_close_timeout=timedelta(seconds=30))
        self.stage = "waiting"
        await workflow.wait_condition(lambda: self.proceeding)
        return await workflow.execute_activity(add_one, y,
                                               start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal
    def proceed(self) -> None:
        self.proceeding = True

    @workflow.query
    def where(self) -> str:
        return self.stage
'''
CHANGED = CELL.replace("return x + 1", "return x + 10")


@dataclass
class Cell:
    """What a cell printed and returned."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


class Kernel:
    """A real ipykernel driven through jupyter_client, as Jupyter drives it."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd), env=env)
        self._connect()

    def _connect(self) -> None:
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> Cell:
        cell = Cell()

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            cell.outputs.append(msg)
            if kind == "stream":
                if content["name"] == "stdout":
                    cell.stdout += content["text"]
                else:
                    cell.stderr += content["text"]
            elif kind == "execute_result":
                cell.result = content["data"].get("text/plain")
            elif kind == "error":
                cell.error = f"{content['ename']}: {content['evalue']}"

        self.client.execute_interactive(code, timeout=timeout, output_hook=hook)
        return cell

    def ok(self, code: str, timeout: float = 60) -> Cell:
        cell = self.run(code, timeout)
        assert cell.error is None, f"{code!r} failed: {cell.error}\n{cell.stderr}"
        return cell

    def restart(self) -> None:
        """Kill the kernel process (SIGKILL) and start a new one, as 'Restart kernel' does
        with a kernel that does not answer."""
        self.client.stop_channels()
        self.manager.restart_kernel(now=True)
        self._connect()

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(params=["embedded", "postgres"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A project folder with a notebooks/ folder to run the kernel in, and the kernel's env."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\nversion = '0'\n")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DBOSIFY_DATABASE_URL", "DBOS_SYSTEM_DATABASE_URL")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    if request.param == "postgres":
        url = require_postgres()
        empty_postgres(url)
        env["DBOSIFY_DATABASE_URL"] = url
    yield notebooks, env


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_a_waiting_run_survives_a_kernel_restart(project: tuple[Path, dict[str, str]]) -> None:
    notebooks, env = project
    log = notebooks / "calls.log"
    kernel = Kernel(notebooks, env)
    try:
        loaded = kernel.ok("%load_ext dbosify.magics")
        assert "dbosify: connected to" in loaded.stdout
        kernel.ok(CELL)
        kernel.ok("%workflow start Counter 1 --id c1")
        _wait_for(lambda: kernel.ok("%workflow query c1 where").result == "'waiting'", 60,
                  "c1 to wait for proceed")
        assert log.read_text().splitlines() == ["add_one(1)"]

        kernel.restart()
        restored = kernel.ok("%load_ext dbosify.magics")
        assert "restored Counter, add_one (1 cell)" in restored.stdout, restored.stdout
        kernel.ok(CHANGED)
        assert kernel.ok("%workflow signal c1 proceed").stdout.strip() == \
            "dbosify: signal 'proceed' sent to 'c1'"
        result = kernel.ok("%workflow result c1 --timeout 60", timeout=90)
        assert result.result == "3"  # c1 stays on its version: 1 + 1 + 1
        assert log.read_text().splitlines() == ["add_one(1)", "add_one(2)"]

        # A new run uses the changed code.
        kernel.ok("%workflow start Counter 1 --id c2")
        _wait_for(lambda: kernel.ok("%workflow query c2 where").result == "'waiting'", 60,
                  "c2 to wait for proceed")
        kernel.ok("%workflow signal c2 proceed")
        assert kernel.ok("%workflow result c2 --timeout 60", timeout=90).result == "21"
        # A handle used on the kernel's own loop (top-level await), as Jupyter users do.
        kernel.ok("h = %workflow start Counter 1 --id c3")
        _wait_for(lambda: kernel.ok("%workflow query c3 where").result == "'waiting'", 60,
                  "c3 to wait for proceed")
        assert kernel.ok("await h.signal('proceed')\nawait h.result()").result == "21"
        if "DBOSIFY_DATABASE_URL" not in env:
            # The embedded default lives at the project's root, not in notebooks/.
            assert (notebooks.parent / ".dbosify" / "dbosify.sqlite").is_file()
            assert not (notebooks / ".dbosify").exists()
    finally:
        kernel.shutdown()


def test_the_headless_surface_never_imports_the_notebook_stack() -> None:
    code = ("import sys, dbosify, dbosify.client, dbosify.worker\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('IPython', 'ipywidgets', 'pandas', 'ipykernel'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "", f"imported: {out.stdout.strip()}"
