"""Temporal programs run with only their imports changed (issue 9 §1).

Each program under ``programs/`` is written for temporalio; the tests replace every
``temporalio`` with ``dbosify`` (nothing else), run it in a fresh interpreter on each backend and
check its output. The environment has no Temporal configuration (no config file, no
``TEMPORAL_*`` variables): ``ClientConfig.load_client_connect_config()`` then gives no address and
``Client.connect`` uses the configured database (DESIGN §3).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"
REPO_ROOT = Path(__file__).resolve().parents[2]


def run_swapped(program: str, database: str, tmp_path: Path,
                extra_env: dict[str, str] | None = None) -> str:
    """Run ``programs/<program>`` with ``temporalio`` replaced by ``dbosify``; its stdout."""
    source = (PROGRAMS / program).read_text()
    assert "temporalio" in source
    swapped = tmp_path / program
    swapped.write_text(source.replace("temporalio", "dbosify"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               DBOSIFY_DATABASE_URL=database,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    env.pop("DBOS_SYSTEM_DATABASE_URL", None)
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, str(swapped)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.slow
def test_hello_envconfig(database: str, tmp_path: Path) -> None:
    out = run_swapped("hello_envconfig.py", database, tmp_path)
    assert "Result: Hello, World!" in out


@pytest.mark.slow
def test_hello_envconfig_with_temporal_address(database: str, tmp_path: Path) -> None:
    """A Temporal address and namespace from the environment lead to the configured database."""
    out = run_swapped("hello_envconfig.py", database, tmp_path,
                      {"TEMPORAL_ADDRESS": "localhost:7233", "TEMPORAL_NAMESPACE": "default"})
    assert "Result: Hello, World!" in out


@pytest.mark.slow
def test_hello_pydantic_converter(database: str, tmp_path: Path) -> None:
    pytest.importorskip("pydantic", reason="the pydantic sample needs pydantic (the dev extra)")
    out = run_swapped("hello_pydantic.py", database, tmp_path)
    assert ("Result: [('127.0.0.1', '2000-01-03T03:04:05'), "
            "('127.0.0.2', '2001-02-04T04:05:06')]") in out


async def test_envconfig_connect_without_configuration(
        database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In process: no config file and no TEMPORAL_* variables give no arguments at all, and
    ``Client.connect()`` with them means the configured database."""
    from dbosify.envconfig import ClientConfig

    from dbosify._service._service import DatabaseService
    from dbosify._store._database import resolve_database_url
    from dbosify.client import Client

    for name in [n for n in os.environ if n.startswith("TEMPORAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", database)
    config = ClientConfig.load_client_connect_config()
    assert config == {}
    client = await Client.connect(**config)
    assert isinstance(client.service_client, DatabaseService)
    assert client.service_client.process.db == resolve_database_url(database)


@pytest.mark.slow
def test_hello_async_activity_completion(database: str, tmp_path: Path) -> None:
    out = run_swapped("hello_async_activity_completion.py", database, tmp_path)
    assert out.count("Waiting one second...") == 3
    assert "Result: Hello, World!" in out


@pytest.mark.slow
def test_messages_program(database: str, tmp_path: Path) -> None:
    """Signals before any worker are seen by the first query; an update that finishes the
    workflow returns its result (issue 9 §6)."""
    out = run_swapped("messages.py", database, tmp_path)
    assert "Query: 2" in out
    assert "Update: Workflow status updated" in out
    assert "Result: 2" in out


@pytest.mark.slow
def test_sandboxed_workflow_with_aliased_imports(database: str, tmp_path: Path) -> None:
    """temporalio's sandbox re-imports the workflow's module, aliases included."""
    pytest.importorskip("pydantic", reason="the program uses the pydantic converter")
    out = run_swapped("sandboxed.py", database, tmp_path)
    assert "Result: QUIET" in out


@pytest.mark.slow
def test_hello_activity_multiprocess(database: str, tmp_path: Path) -> None:
    out = run_swapped("hello_activity_multiprocess.py", database, tmp_path)
    activity_pids = {line.rsplit(" ", 1)[1] for line in out.splitlines()
                     if line.startswith("Heartbeating activity on PID")}
    result = [line for line in out.splitlines() if line.startswith("Result on PID")]
    assert len(activity_pids) == 1 and result, out
    assert result[0].endswith(": Hello, World!")
    assert result[0].split()[3].rstrip(":") not in activity_pids  # Ran in a child process.


@pytest.mark.slow
def test_hello_local_activity(database: str, tmp_path: Path) -> None:
    out = run_swapped("hello_local_activity.py", database, tmp_path)
    assert "Result: Hello, World! (after 3 attempts)" in out
    assert "Eager: True" in out
    assert "Markers: 2" in out  # Each local activity recorded as Core's marker, once.
