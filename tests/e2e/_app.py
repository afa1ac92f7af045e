"""The application the end-to-end tests run in worker subprocesses.

Run as ``python _app.py DATABASE_URL TASK_QUEUE IDENTITY [MARKER_DIR]``: it serves the task
queue until it is killed. Activities append one JSON line per event (``start``, ``done``,
``fail``) to ``MARKER_DIR/act-<pid>.log``, so a test sees exactly which activity executions
happened, in which process and when. Once the worker serves its queue the process writes
``MARKER_DIR/ready-<pid>``.

The test process imports this module too (for the workflow classes), without running a worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbosify import activity, workflow
from dbosify.client import Client
from dbosify.common import RetryPolicy
from dbosify.exceptions import ActivityError, ApplicationError
from dbosify.worker import Worker

MARKER_ENV = "DBOSIFY_E2E_MARKERS"
RELEASE_FILE = "release"
"""Gate activities wait until this file exists in the marker directory."""
TIMER_SECONDS = 3.0
BACKOFF_SECONDS = 3.0
LONG_TIMER_SECONDS = 2.5

_TIMEOUT = timedelta(seconds=60)


def _marker_dir() -> Path | None:
    value = os.environ.get(MARKER_ENV)
    return Path(value) if value else None


def mark(event: str, name: str, **extra: Any) -> None:
    """Append one line for this activity execution (one ``write`` on an O_APPEND file)."""
    directory = _marker_dir()
    if directory is None:
        return
    info = activity.info()
    line = json.dumps({"wf": info.workflow_id, "act": name, "attempt": info.attempt,
                       "event": event, "pid": os.getpid(), "t": time.time(), **extra})
    fd = os.open(directory / f"act-{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


# Activities -------------------------------------------------------------------------------------

@activity.defn
async def step(name: str, delay_ms: int) -> str:
    """Marks its start, takes ``delay_ms``, marks its end."""
    mark("start", name)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    mark("done", name)
    return name


@activity.defn
async def gate(name: str) -> str:
    """Marks its start, then waits until the test creates the release file."""
    mark("start", name)
    directory = _marker_dir()
    assert directory is not None, "gate needs a marker directory"
    while not (directory / RELEASE_FILE).exists():
        await asyncio.sleep(0.02)
    mark("done", name)
    return name


@activity.defn
async def flaky(name: str) -> str:
    """Fails its first attempt; later attempts return ``name@attempt``."""
    attempt = activity.info().attempt
    mark("start", name)
    if attempt == 1:
        mark("fail", name)
        raise ApplicationError("attempt 1 fails on purpose", type="Flaky")
    mark("done", name)
    return f"{name}@{attempt}"


@activity.defn
async def progress(name: str) -> str:
    """Heartbeats its progress, resuming from the last heartbeat; blocks at item 3 until
    released (the test kills the worker there)."""
    info = activity.info()
    start = int(info.heartbeat_details[0]) if info.heartbeat_details else 0
    mark("start", name, resumed_from=start)
    directory = _marker_dir()
    assert directory is not None, "progress needs a marker directory"
    for item in range(start, 6):
        activity.heartbeat(item + 1)
        if item == 3:
            mark("blocked", name)
            while not (directory / RELEASE_FILE).exists():
                activity.heartbeat(item + 1)  # Alive, and still at item 4.
                await asyncio.sleep(0.05)
    mark("done", name)
    return f"{name} from {start}"


@activity.defn
async def watchful(name: str) -> str:
    """Heartbeats until released or cancelled; marks how its cancellation reached it."""
    mark("start", name)
    directory = _marker_dir()
    assert directory is not None, "watchful needs a marker directory"
    try:
        while not (directory / RELEASE_FILE).exists():
            activity.heartbeat()
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        details = activity.cancellation_details()
        mark("cancelled", name, requested=bool(details and details.cancel_requested),
             not_found=bool(details and details.not_found))
        raise
    mark("done", name)
    return name


@activity.defn
async def checkpoint(name: str, gated: str) -> str:
    """Marks its start; when ``name`` is ``gated``, waits for the release file; marks its end."""
    mark("start", name)
    directory = _marker_dir()
    if name == gated:
        assert directory is not None, "a gated checkpoint needs a marker directory"
        while not (directory / RELEASE_FILE).exists():
            await asyncio.sleep(0.02)
    mark("done", name)
    return name


ACTIVITIES: list[Callable[..., Any]] = [step, gate, flaky, progress, watchful, checkpoint]


# Workflows --------------------------------------------------------------------------------------

@workflow.defn
class Pipeline:
    """Three activities ``a``, ``b``, ``c``; between ``a`` and ``b`` per ``mode``:

    - ``"activity"``: waits for the ``proceed`` signal, then ``b`` is a gate (it blocks until
      released);
    - ``"timer"``: a ``workflow.sleep(TIMER_SECONDS)``;
    - ``"signal"``: waits for the ``proceed`` signal.

    Every ``proceed`` signal received goes into the result, so a signal delivered twice shows.
    """

    def __init__(self) -> None:
        self.words: list[str] = []

    @workflow.run
    async def run(self, mode: str) -> str:
        parts = [await workflow.execute_activity(step, args=["a", 0],
                                                 start_to_close_timeout=_TIMEOUT)]
        if mode == "timer":
            before = workflow.now()
            await workflow.sleep(TIMER_SECONDS)
            slept = workflow.now() - before >= timedelta(seconds=TIMER_SECONDS)
            parts.append("slept" if slept else "woke-early")
        else:
            await workflow.wait_condition(lambda: bool(self.words))
            parts.append("{words}")  # Filled in at the end: a later duplicate shows too.
        if mode == "activity":
            parts.append(await workflow.execute_activity(gate, "b",
                                                         start_to_close_timeout=_TIMEOUT))
        else:
            parts.append(await workflow.execute_activity(step, args=["b", 0],
                                                         start_to_close_timeout=_TIMEOUT))
        parts.append(await workflow.execute_activity(step, args=["c", 0],
                                                     start_to_close_timeout=_TIMEOUT))
        return "-".join(parts).replace("{words}", "+".join(self.words))

    @workflow.signal
    def proceed(self, word: str) -> None:
        self.words.append(word)


@workflow.defn
class Backoff:
    """One activity whose first attempt fails; the retry waits ``BACKOFF_SECONDS``."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            flaky, "x", start_to_close_timeout=_TIMEOUT,
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=BACKOFF_SECONDS),
                                     backoff_coefficient=2.0, maximum_attempts=5))


@workflow.defn
class Short:
    """One activity of ``delay_ms``."""

    @workflow.run
    async def run(self, delay_ms: int) -> str:
        return await workflow.execute_activity(step, args=["s", delay_ms],
                                               start_to_close_timeout=_TIMEOUT)


@workflow.defn
class Blocked:
    """A gate, then a step."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(gate, "g", start_to_close_timeout=_TIMEOUT)
        second = await workflow.execute_activity(step, args=["after", 0],
                                                 start_to_close_timeout=_TIMEOUT)
        return f"{first}-{second}"


@workflow.defn
class Spanning:
    """Outlives a short lease: a step, a ``LONG_TIMER_SECONDS`` timer, a step."""

    @workflow.run
    async def run(self) -> str:
        first = await workflow.execute_activity(step, args=["one", 50],
                                                start_to_close_timeout=_TIMEOUT)
        await workflow.sleep(LONG_TIMER_SECONDS)
        second = await workflow.execute_activity(step, args=["two", 50],
                                                 start_to_close_timeout=_TIMEOUT)
        return f"{first}-{second}"


@workflow.defn
class Progress:
    """One heartbeating activity (details saved at most every 0.8 s: 80 % of its timeout)."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(progress, "p", start_to_close_timeout=_TIMEOUT,
                                               heartbeat_timeout=timedelta(seconds=1))


@workflow.defn
class RemoteSteps:
    """Two steps on another task queue (run by a worker process of that queue)."""

    @workflow.run
    async def run(self, queue: str) -> str:
        first = await workflow.execute_activity(step, args=["r1", 0], task_queue=queue,
                                                start_to_close_timeout=_TIMEOUT)
        second = await workflow.execute_activity(step, args=["r2", 0], task_queue=queue,
                                                 start_to_close_timeout=_TIMEOUT)
        return f"{first}-{second}"


@workflow.defn
class CancelRemote:
    """Starts ``watchful`` on another task queue, cancels it on the ``cancel`` signal."""

    def __init__(self) -> None:
        self.cancel_requested = False

    @workflow.run
    async def run(self, queue: str, cancellation_type: str) -> str:
        handle = workflow.start_activity(
            watchful, "w", task_queue=queue, start_to_close_timeout=_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=5),
            cancellation_type=workflow.ActivityCancellationType[cancellation_type])
        await workflow.wait_condition(lambda: self.cancel_requested)
        handle.cancel()
        try:
            return await handle
        except ActivityError as err:
            return f"cancelled:{type(err.cause).__name__}"

    @workflow.signal
    def cancel(self) -> None:
        self.cancel_requested = True


# Versions of one workflow (the durability-order tests, issue 10) ------------------------------

VERSION_ENV = "DBOSIFY_E2E_VERSION"
"""Which version of ``Versioned`` and ``FirstPatched`` a worker process runs (1, 2 or 3)."""
WAITING_LINE = "VERSIONED_WAITING"
CHAIN_LINE = "CHAIN_RUN"


class _Proceed:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


@workflow.defn(name="Versioned")
class VersionedV1(_Proceed):
    """``pre``, then ``old``, then waits for ``proceed``. ``gated`` names the activity that
    blocks until the release file exists (the tests kill the worker while it blocks)."""

    @workflow.run
    async def run(self, gated: str) -> str:
        first = await workflow.execute_activity(checkpoint, args=["pre", gated],
                                                start_to_close_timeout=_TIMEOUT)
        second = await workflow.execute_activity(checkpoint, args=["old", gated],
                                                 start_to_close_timeout=_TIMEOUT)
        print(f"{WAITING_LINE} {workflow.info().workflow_id}", flush=True)
        await workflow.wait_condition(lambda: self.go)
        return f"{first}-{second}"


@workflow.defn(name="Versioned")
class VersionedV2(_Proceed):
    """v1 with ``new`` in place of ``old`` behind ``workflow.patched("v2")``."""

    @workflow.run
    async def run(self, gated: str) -> str:
        first = await workflow.execute_activity(checkpoint, args=["pre", gated],
                                                start_to_close_timeout=_TIMEOUT)
        name = "new" if workflow.patched("v2") else "old"
        second = await workflow.execute_activity(checkpoint, args=[name, gated],
                                                 start_to_close_timeout=_TIMEOUT)
        print(f"{WAITING_LINE} {workflow.info().workflow_id}", flush=True)
        await workflow.wait_condition(lambda: self.go)
        return f"{first}-{second}"


@workflow.defn(name="Versioned")
class VersionedV3(_Proceed):
    """v2 once every v1 run is gone: ``workflow.deprecate_patch("v2")`` and ``new`` only."""

    @workflow.run
    async def run(self, gated: str) -> str:
        first = await workflow.execute_activity(checkpoint, args=["pre", gated],
                                                start_to_close_timeout=_TIMEOUT)
        workflow.deprecate_patch("v2")
        second = await workflow.execute_activity(checkpoint, args=["new", gated],
                                                 start_to_close_timeout=_TIMEOUT)
        print(f"{WAITING_LINE} {workflow.info().workflow_id}", flush=True)
        await workflow.wait_condition(lambda: self.go)
        return f"{first}-{second}"


@workflow.defn(name="FirstPatched")
class FirstPatchedV1:
    """One activity, ``old``, scheduled by the first activation."""

    @workflow.run
    async def run(self, gated: str) -> str:
        return await workflow.execute_activity(checkpoint, args=["old", gated],
                                               start_to_close_timeout=_TIMEOUT)


@workflow.defn(name="FirstPatched")
class FirstPatchedV2:
    """``new`` in place of ``old`` behind ``workflow.patched("first")``, in the first
    activation."""

    @workflow.run
    async def run(self, gated: str) -> str:
        name = "new" if workflow.patched("first") else "old"
        return await workflow.execute_activity(checkpoint, args=[name, gated],
                                               start_to_close_timeout=_TIMEOUT)


@workflow.defn
class Chain:
    """Runs ``step("chain-<n>")``, prints ``CHAIN_RUN <n>``, and continues as new up to
    ``total``."""

    @workflow.run
    async def run(self, n: int, total: int) -> str:
        await workflow.execute_activity(step, args=[f"chain-{n}", 0],
                                        start_to_close_timeout=_TIMEOUT)
        print(f"{CHAIN_LINE} {n}", flush=True)
        if n < total:
            workflow.continue_as_new(args=[n + 1, total])
        return f"chain done {n}"


@workflow.defn
class Answers:
    """One step; its ``state`` query tells where the run is."""

    def __init__(self) -> None:
        self.state = "started"

    @workflow.run
    async def run(self, word: str) -> str:
        self.state = await workflow.execute_activity(step, args=[word, 0],
                                                     start_to_close_timeout=_TIMEOUT)
        return self.state

    @workflow.query
    def current(self) -> str:
        return f"state={self.state}"


@workflow.defn
class Restartable:
    """Three steps of 200 ms, each followed by a 1 s timer: in flight for about 4 s."""

    @workflow.run
    async def run(self, n: int) -> str:
        parts = []
        for i in range(3):
            parts.append(await workflow.execute_activity(step, args=[f"r{i}", 200],
                                                         start_to_close_timeout=_TIMEOUT))
            await workflow.sleep(1.0)
        return f"{n}:" + "-".join(parts)


@workflow.defn
class Churn:
    """Five short steps, with a short timer after the third."""

    @workflow.run
    async def run(self, n: int) -> str:
        parts = []
        for i in range(5):
            parts.append(await workflow.execute_activity(step, args=[f"c{i}", 30],
                                                         start_to_close_timeout=_TIMEOUT))
            if i == 2:
                await workflow.sleep(0.2)
        return f"{n}:" + "-".join(parts)


_VERSIONS: dict[str, list[type]] = {
    "1": [VersionedV1, FirstPatchedV1],
    "2": [VersionedV2, FirstPatchedV2],
    "3": [VersionedV3, FirstPatchedV2],
}

CHILD_STARTING_LINE = "CHILD_STARTING"
CHILD_WAITING_LINE = "CHILD_WAITING"


@workflow.defn
class ChildGate:
    """A child workflow whose one activity is ``gate("kid-<name>")``."""

    @workflow.run
    async def run(self, name: str) -> str:
        result: str = await workflow.execute_activity(gate, f"kid-{name}",
                                                      start_to_close_timeout=_TIMEOUT)
        return result


@workflow.defn
class ChildParent:
    """Prints ``CHILD_STARTING <id>`` in the task that starts ``ChildGate`` on ``queue``, and
    ``CHILD_WAITING <id>`` once it has started; returns the child's result."""

    @workflow.run
    async def run(self, queue: str) -> str:
        wid = workflow.info().workflow_id
        print(f"{CHILD_STARTING_LINE} {wid}", flush=True)
        handle = await workflow.start_child_workflow(ChildGate.run, wid, id=f"{wid}-kid",
                                                     task_queue=queue,
                                                     execution_timeout=_TIMEOUT)
        print(f"{CHILD_WAITING_LINE} {wid}", flush=True)
        return f"parent got {await handle}"


LOCAL_RAN_LINE = "LOCAL_RAN"
LOCAL_DONE_LINE = "LOCAL_DONE"
LOCAL_FILE = "local-lines.txt"


@activity.defn
async def append_line(wid: str) -> str:
    """A local activity: appends one line to ``MARKER_DIR/local-lines.txt``, prints
    ``LOCAL_RAN <wid>`` and returns the line."""
    mark("start", f"local-{wid}")
    directory = _marker_dir()
    assert directory is not None, "append_line needs a marker directory"
    line = f"{wid} attempt {activity.info().attempt} pid {os.getpid()}"
    with (directory / LOCAL_FILE).open("a") as out:
        out.write(line + "\n")
    print(f"{LOCAL_RAN_LINE} {wid}", flush=True)
    return line


@workflow.defn
class LocalThenWait:
    """Runs ``append_line`` as a local activity, prints ``LOCAL_DONE <id>`` in the task that
    receives its result, then waits for ``proceed`` and returns the line."""

    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> str:
        wid = workflow.info().workflow_id
        line: str = await workflow.execute_local_activity(
            append_line, wid, start_to_close_timeout=_TIMEOUT)
        print(f"{LOCAL_DONE_LINE} {wid}", flush=True)
        await workflow.wait_condition(lambda: self.go)
        return line

    @workflow.signal
    def proceed(self) -> None:
        self.go = True


WORKFLOWS = [Pipeline, Backoff, Short, Blocked, Spanning, Progress, RemoteSteps, CancelRemote,
             Chain, Answers, Restartable, Churn, ChildGate, ChildParent, LocalThenWait]


# Entry point ------------------------------------------------------------------------------------

async def serve(url: str, task_queue: str, identity: str) -> None:
    """Serve ``task_queue`` until the process is killed."""
    client = await Client.connect(url)
    versioned = _VERSIONS[os.environ.get(VERSION_ENV, "1")]
    async with Worker(client, task_queue=task_queue, workflows=WORKFLOWS + versioned,
                      activities=[*ACTIVITIES, append_line], identity=identity):
        directory = _marker_dir()
        if directory is not None:
            (directory / f"ready-{os.getpid()}").write_text(json.dumps({"t": time.time()}))
        await asyncio.Event().wait()


DIE_ON_ENV = "DBOSIFY_E2E_DIE_ON"
"""A worker with this set SIGKILLs itself the moment a line containing its value reaches its
standard output: nothing the process would do after writing the line happens."""


class _DieOn:
    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text

    def write(self, data: str) -> int:
        written = self.inner.write(data)
        if self.text in data:
            self.inner.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return int(written)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        raise SystemExit("usage: _app.py DATABASE_URL TASK_QUEUE IDENTITY [MARKER_DIR]")
    if len(argv) == 4:
        os.environ[MARKER_ENV] = argv[3]
    if os.environ.get(DIE_ON_ENV):
        sys.stdout = _DieOn(sys.stdout, os.environ[DIE_ON_ENV])
    asyncio.run(serve(argv[0], argv[1], argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
