"""%%workflow versions: a changed cell is a new version, a run stays on its own, a new kernel
restores what this notebook saved, and only a worker with a run's version takes it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType

import dbosify.notebook as nb
from dbosify._runtime._process import close_current, current_process
from dbosify._store import _tables as t
from dbosify.notebook._session import Session
from dbosify.worker import Worker
from tests.notebook.conftest import COUNTER

CHANGED = COUNTER.replace("INCREMENT = 1\n", "INCREMENT = 10\n")


def _log(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def _wait_for_lines(tmp_path: Path, n: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while len(_log(tmp_path)) < n:
        assert time.monotonic() < end, f"expected {n} activity calls, saw {_log(tmp_path)}"
        time.sleep(0.02)



def test_a_run_stays_on_its_version(session: Session, tmp_path: Path) -> None:
    v1 = session.define(COUNTER).version
    session.start("Counter", 1, id="c1")
    _wait_for_lines(tmp_path, 1)
    v2 = session.define(CHANGED).version
    assert v1 != v2
    session.start("Counter", 1, id="c2")
    _wait_for_lines(tmp_path, 2)
    session.signal("c1", "go")
    session.signal("c2", "go")
    assert session.result("c1", timeout=20) == 3  # add_one of its own version, twice
    assert session.result("c2", timeout=20) == 21  # the changed add_one
    # Temporal's build-id versioning, as describe() and the history show it.
    desc = session.run(session.client.get_workflow_handle("c1").describe())
    info = desc.raw_description.workflow_execution_info
    assert info.assigned_build_id == v1
    assert info.most_recent_worker_version_stamp.build_id == v1
    history = session.run(session.client.get_workflow_handle("c2").fetch_history())
    completed = [e for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    assert completed and all(
        e.workflow_task_completed_event_attributes.worker_version.build_id == v2
        for e in completed)


def test_rerunning_an_old_cell_makes_it_the_latest_again(session: Session,
                                                         namespace: dict[str, Any]) -> None:
    v1 = session.define(COUNTER, namespace=namespace).version
    session.define(CHANGED, namespace=namespace)
    assert namespace["INCREMENT"] == 10
    session.define(COUNTER, namespace=namespace)
    assert namespace["INCREMENT"] == 1
    handle = session.start("Counter", 1, id="again")
    desc = session.run(handle.describe())
    assert desc.raw_description.workflow_execution_info.assigned_build_id == v1
    session.terminate("again")


def test_restore_brings_back_latest_and_pinned_versions(database: str, tmp_path: Path) -> None:
    session, report = nb.connect(database, notebook="nb-a")
    assert report is not None and "no saved definitions" in str(report)
    v1 = session.define(COUNTER).version
    session.start("Counter", 1, id="c1")
    _wait_for_lines(tmp_path, 1)
    session.define(CHANGED)
    nb.close()
    close_current()  # As a new kernel: a new process, nothing imported in it yet.

    namespace: dict[str, Any] = {}
    session, report = nb.connect(database, notebook="nb-a", namespace=namespace)
    try:
        assert str(report) == ("dbosify: restored Counter, add_one (1 cell) and 1 older "
                               "version for 1 unfinished run")
        assert namespace["INCREMENT"] == 10  # the latest version's names
        assert report.older_versions == [v1]
        session.signal("c1", "go")
        assert session.result("c1", timeout=20) == 3
        assert _log(tmp_path) == ["add_one 1", "add_one 2"]
        # New runs use the latest version without re-running the cell.
        session.start("Counter", 1, id="new")
        session.signal("new", "go")
        assert session.result("new", timeout=20) == 21
    finally:
        nb.close()


def test_another_notebook_restores_nothing_of_this_one(database: str) -> None:
    session, _ = nb.connect(database, notebook="nb-a")
    session.define(COUNTER)
    nb.close()
    namespace: dict[str, Any] = {}
    _, report = nb.connect(database, notebook="nb-b", namespace=namespace)
    try:
        assert report is not None and report.cells == 0 and "Counter" not in namespace
    finally:
        nb.close()


def test_a_worker_without_the_version_leaves_a_pinned_run_alone(database: str,
                                                                tmp_path: Path) -> None:
    session, _ = nb.connect(database, notebook="nb-a")
    cell = session.define(COUNTER)
    session.start("Counter", 1, id="pinned")
    _wait_for_lines(tmp_path, 1)
    nb.close()  # The run is released (its owner stopped), pinned to cell.version.
    assert _owner_now(database, "pinned") is None

    changed = __import__("dbosify.notebook._cells", fromlist=["x"]).import_cell(
        CHANGED, "dbosify")
    client = session.client
    process = current_process()
    assert process is not None

    async def serve_unversioned() -> None:
        async with Worker(client, task_queue="dbosify", workflows=[changed.workflows["Counter"]],
                          activities=list(changed.activities.values()),
                          activity_executor=session.executor.__class__()):
            await asyncio.sleep(1.0)  # several claim rounds

    nb.background_loop().run(serve_unversioned())
    assert _owner_now(database, "pinned") is None
    session, _ = nb.connect(database, notebook="nb-a")
    try:
        assert cell.version in [c.version for c in session.cells.values()]
        session.signal("pinned", "go")
        assert session.result("pinned", timeout=20) == 3
    finally:
        nb.close()


def _owner_now(database: str, workflow_id: str) -> str | None:
    process = current_process()
    assert process is not None
    with process.store.engine.connect() as conn:
        return conn.execute(sa.select(t.runs.c.owner).where(
            t.runs.c.workflow_id == workflow_id)).scalar()


def test_claims_and_takeovers_respect_build_ids(database: str) -> None:
    """The store's rule, for runs and activity attempts alike: a row pinned to a build id goes
    only to a worker that has it on the row's task queue; an unversioned row goes to any."""
    from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest

    from dbosify._runtime._starting import start_run
    from dbosify._store._database import resolve_database_url
    from dbosify._store._store import Store

    store = Store(resolve_database_url(database))
    try:
        def run(workflow_id: str, build_id: str | None, owner: str | None = None) -> str:
            req = StartWorkflowExecutionRequest(namespace="default", workflow_id=workflow_id)
            req.workflow_type.name = "Counter"
            req.task_queue.name = "q"
            return start_run(store, req, owner=owner, build_id=build_id).run_id

        pinned, other, free = run("pinned", "v1"), run("other", "v2"), run("free", None)
        assert set(store.claim_unowned_runs(["q"], "p1", 10, [("q", "v9")])) == {free}
        assert store.claim_unowned_runs(["q"], "p1", 10, [("elsewhere", "v1")]) == []
        assert store.claim_unowned_runs(["q"], "p2", 10, [("q", "v1")]) == [pinned]
        # p2 dies: a process without v1 does not take its run; one with v1 does.
        assert store.take_over_runs(["q"], ["p2"], "p3", [("q", "v2")]) == []
        assert store.take_over_runs(["q"], ["p2"], "p3", [("q", "v1")]) == [pinned]
        assert store.claim_unowned_runs(["q"], "p4", 10, [("q", "v2")]) == [other]

        store.add_activity_task(pinned, 1, 1, "q", b"x", "v1")
        store.add_activity_task(free, 1, 1, "q", b"y", None)
        assert [r.run_id for r in store.claim_activity_tasks(["q"], "p5", 10, (),
                                                              [("q", "v2")])] == [free]
        [task] = store.claim_activity_tasks(["q"], "p6", 10, (), [("q", "v1")])
        assert (task.run_id, task.build_id) == (pinned, "v1")
    finally:
        store.close()


def test_notebook_key_prefers_what_jupyter_tells_the_kernel(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    from dbosify.notebook._session import notebook_key

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert notebook_key() == str(tmp_path)  # the working directory (tests run in tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "a.ipynb"))
    assert notebook_key() == str(tmp_path / "a.ipynb")
    # ipykernel puts the same path in the user namespace as __session__.
    assert notebook_key(namespace={"__session__": str(tmp_path / "b.ipynb")}) == \
        str(tmp_path / "b.ipynb")
    assert notebook_key("explicit", {"__session__": "x.ipynb"}) == "explicit"


def test_a_cell_that_no_longer_imports_is_named_in_the_restore_line(
        database: str, tmp_path: Path, monkeypatch: Any) -> None:
    import sys

    (tmp_path / "gone_helpers.py").write_text("BASE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    session, _ = nb.connect(database, notebook="nb-gone")
    version = session.define(COUNTER.replace("INCREMENT = 1\n",
                                             "from gone_helpers import BASE as INCREMENT\n")
                             ).version
    nb.close()
    close_current()
    (tmp_path / "gone_helpers.py").unlink()
    sys.modules.pop("gone_helpers", None)
    sys.modules.pop(f"dbosify_cells.v{version}", None)
    _, report = nb.connect(database, notebook="nb-gone")
    try:
        assert report is not None
        assert str(report).startswith("dbosify: restored nothing (0 cells); could not import "
                                      f"version {version} (ModuleNotFoundError")
    finally:
        nb.close()
