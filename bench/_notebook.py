"""The notebook workloads: N1 (a magic that waits, through a real InteractiveShell) and N2 (a
kernel restart until a waiting run has resumed, through a real Jupyter kernel)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("bench")

N1_TARGET_RATIO = 1.5
N2_TARGET_P50_MS = 2000.0

# N1: the same one-activity workflow as W1, defined in a %%workflow cell.
ONE_ACTIVITY_CELL = '''
from datetime import timedelta

from dbosify import activity, workflow


@activity.defn
async def bump(x: int) -> int:
    return x + 1


@workflow.defn
class OneActivity:
    @workflow.run
    async def run(self, x: int) -> int:
        return await workflow.execute_activity(bump, x,
                                               start_to_close_timeout=timedelta(seconds=60))
'''

# N2: a run that does one activity, then waits for a signal.
WAITING_CELL = '''%%workflow
from datetime import timedelta

from dbosify import activity, workflow


@activity.defn
async def bump(x: int) -> int:
    return x + 1


@workflow.defn
class Parked:
    def __init__(self) -> None:
        self.go = False
        self.stage = "starting"

    @workflow.run
    async def run(self, x: int) -> int:
        y = await workflow.execute_activity(bump, x, start_to_close_timeout=timedelta(seconds=60))
        self.stage = "waiting"
        await workflow.wait_condition(lambda: self.go)
        return await workflow.execute_activity(bump, y,
                                               start_to_close_timeout=timedelta(seconds=60))

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def where(self) -> str:
        return self.stage
'''


def magic_wait_latencies(url: str, n: int, warmup: int) -> Any:
    """N1: seconds per ``%workflow start OneActivity 1 --wait`` in a real InteractiveShell
    (``%load_ext dbosify.magics`` connected to ``url``), one after the other."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    os.environ["DBOSIFY_DATABASE_URL"] = url
    config = Config()
    config.HistoryManager.enabled = False  # no ~/.ipython history database for the bench
    shell = InteractiveShell.instance(config=config)
    # Its exit hook reads the working directory, which the bench removes before exiting.
    atexit.unregister(shell.atexit_operations)
    # What the magics print goes to stderr: stdout carries only the result lines.
    with contextlib.redirect_stdout(sys.stderr):
        return _n1(shell, n, warmup)


def _n1(shell: Any, n: int, warmup: int) -> Any:
    from bench.run import Latencies
    from dbosify._runtime._process import close_current

    try:
        shell.run_line_magic("load_ext", "dbosify.magics")
        shell.run_cell_magic("workflow", "", ONE_ACTIVITY_CELL)
        for _ in range(warmup):
            shell.run_line_magic("workflow", "start OneActivity 1 --wait")
        result = Latencies()
        cpu = time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            value = shell.run_line_magic("workflow", "start OneActivity 1 --wait")
            result.samples.append(time.perf_counter() - start)
            if value != 2:
                raise AssertionError(f"N1 run returned {value!r}, expected 2")
        result.cpu_s = time.process_time() - cpu
        return result
    finally:
        shell.run_line_magic("unload_ext", "dbosify.magics")
        del os.environ["DBOSIFY_DATABASE_URL"]
        close_current()


@dataclass
class Restarts:
    """N2 samples: the whole restart-to-resumed time, and its parts."""

    total: list[float] = field(default_factory=list)
    restart: list[float] = field(default_factory=list)
    load_ext: list[float] = field(default_factory=list)
    resume: list[float] = field(default_factory=list)


def kernel_restarts(url: str, n: int) -> Restarts:
    """N2: a real kernel parks a run on a signal; the kernel is killed and restarted, then
    ``%load_ext dbosify.magics``, ``%workflow signal`` and ``%workflow result`` (the run has
    resumed and finished). Timed from the restart to the result."""
    from jupyter_client.manager import KernelManager

    out = Restarts()
    _compile_dbosify()
    with tempfile.TemporaryDirectory(prefix="dbosify-bench-n2-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DBOS_SYSTEM_DATABASE_URL"}
        env["DBOSIFY_DATABASE_URL"] = url
        manager = KernelManager(kernel_name="python3")
        manager.start_kernel(cwd=tmp, env=env)
        client = _ready(manager)
        try:
            _run(client, "%load_ext dbosify.magics")
            _run(client, WAITING_CELL)
            for i in range(n):
                run_id = f"n2-{i}-{os.getpid()}"
                _run(client, f"%workflow start Parked 1 --id {run_id}")
                end = time.monotonic() + 60
                while _run(client, f"%workflow query {run_id} where") != "'waiting'":
                    if time.monotonic() > end:
                        raise AssertionError(f"N2: {run_id} never waited for its signal")
                    time.sleep(0.02)
                started = time.perf_counter()
                client.stop_channels()
                manager.restart_kernel(now=True)
                client = _ready(manager)
                restarted = time.perf_counter()
                _run(client, "%load_ext dbosify.magics")
                loaded = time.perf_counter()
                _run(client, f"%workflow signal {run_id} proceed")
                value = _run(client, f"%workflow result {run_id} --timeout 60")
                done = time.perf_counter()
                if value != "3":
                    raise AssertionError(f"N2 run returned {value!r}, expected 3")
                out.total.append(done - started)
                out.restart.append(restarted - started)
                out.load_ext.append(loaded - restarted)
                out.resume.append(done - loaded)
                logger.info("N2 %d: %.0f ms (restart %.0f, %%load_ext %.0f, resumed %.0f)", i,
                            out.total[-1] * 1000, out.restart[-1] * 1000,
                            out.load_ext[-1] * 1000, out.resume[-1] * 1000)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    return out


def _compile_dbosify() -> None:
    """Give dbosify's modules their bytecode, as an installed package has it (pip compiles at
    install; an editable checkout writes it at its first import). Where the environment sets
    PYTHONDONTWRITEBYTECODE (as some CI images and sandboxes do), a checkout never gets it, and
    every kernel start would compile dbosify from source (about 0.3 s of ``%load_ext``), which
    no user's kernel does. A no-op when the bytecode is current."""
    import compileall

    import dbosify

    compileall.compile_dir(os.path.dirname(dbosify.__file__), quiet=1)


def _ready(manager: Any) -> Any:
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return client


def _run(client: Any, code: str) -> str | None:
    """Execute a cell; its text/plain result (None if it has none). Raises on an error."""
    outcome: dict[str, Any] = {}

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "execute_result":
            outcome["result"] = msg["content"]["data"].get("text/plain")
        elif msg["msg_type"] == "error":
            outcome["error"] = f"{msg['content']['ename']}: {msg['content']['evalue']}"

    client.execute_interactive(code, timeout=90, output_hook=hook)
    if "error" in outcome:
        raise RuntimeError(f"cell {code.splitlines()[0]!r} failed: {outcome['error']}")
    result: str | None = outcome.get("result")
    return result


def restart_fields(restarts: Restarts) -> dict[str, Any]:
    """N2's result fields."""
    from bench._stats import latency_fields, percentile

    fields: dict[str, Any] = dict(latency_fields(restarts.total))
    for name in ("restart", "load_ext", "resume"):
        fields[f"{name}_p50_ms"] = round(percentile(getattr(restarts, name), 50) * 1000, 1)
    return fields
