"""Where a notebook's options come from: arguments, %config, [tool.dbosify], defaults; and the
embedded default's place (DESIGN §3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import temporalio.converter

import dbosify.notebook as nb
from dbosify._store._database import project_root, resolve_database_url
from dbosify.notebook._config import (
    Dbosify,
    NotebookUsageError,
    load_data_converter,
    load_interceptors,
    resolve_options,
)

CONVERTER_MODULE = '''
import dataclasses
import temporalio.converter
from temporalio.worker import Interceptor

converter = dataclasses.replace(temporalio.converter.DataConverter.default)

def make_converter():
    return converter

class Tracing(Interceptor):
    """A worker interceptor (worker-only)."""


import temporalio.client


class ClientTracing(temporalio.client.Interceptor, Interceptor):
    """A client interceptor that is a worker interceptor too."""

not_a_converter = 3
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a pyproject.toml, a module of its own, and the cwd in notebooks/."""
    (tmp_path / "team_codecs.py").write_text(CONVERTER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    yield tmp_path
    sys.modules.pop("team_codecs", None)


def _pyproject(root: Path, body: str) -> None:
    (root / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.dbosify]\n{body}")


def test_embedded_default_is_at_the_project_root(project: Path) -> None:
    _pyproject(project, "")
    assert project_root() == project
    assert resolve_database_url().url == f"sqlite:///{project / '.dbosify' / 'dbosify.sqlite'}"


def test_a_dbosify_folder_marks_the_root_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    (tmp_path / ".dbosify").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert project_root() == tmp_path


def test_pyproject_database_relative_to_its_folder(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _pyproject(project, 'database = "sqlite:///data/runs.sqlite"\n')
    assert resolve_database_url().url == f"sqlite:///{project / 'data' / 'runs.sqlite'}"
    # The environment comes before pyproject.toml, the argument before both.
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", "sqlite:///env.sqlite")
    assert resolve_database_url().url.endswith("/notebooks/env.sqlite")
    assert resolve_database_url("sqlite:///arg.sqlite").url.endswith("/notebooks/arg.sqlite")


def test_precedence_argument_config_pyproject_default(project: Path) -> None:
    assert resolve_options().task_queue == "dbosify"
    _pyproject(project, 'task_queue = "etl"\ninterceptors = ["team_codecs:Tracing"]\n')
    assert resolve_options().task_queue == "etl"
    assert resolve_options().interceptors == ["team_codecs:Tracing"]
    config = Dbosify()
    config.task_queue = "from-config"
    assert resolve_options(config).task_queue == "from-config"
    assert resolve_options(config, task_queue="explicit").task_queue == "explicit"


def test_bad_options_are_clear(project: Path) -> None:
    _pyproject(project, "task_queue = 3\n")
    with pytest.raises(NotebookUsageError, match="task_queue must be a string"):
        resolve_options()
    _pyproject(project, 'interceptors = "team_codecs:Tracing"\n')
    with pytest.raises(NotebookUsageError, match="list of import paths"):
        resolve_options()
    with pytest.raises(NotebookUsageError, match="not an import path"):
        load_data_converter("converter")
    with pytest.raises(NotebookUsageError, match="cannot import 'nowhere'"):
        load_data_converter("nowhere:converter")
    with pytest.raises(NotebookUsageError, match="has no 'missing'"):
        load_data_converter("team_codecs:missing")
    with pytest.raises(NotebookUsageError, match=r"is not a temporalio\.converter\.DataConverter"):
        load_data_converter("team_codecs:not_a_converter")


def test_converter_and_interceptors_by_import_path(project: Path) -> None:
    import team_codecs  # type: ignore[import-not-found]

    assert load_data_converter("team_codecs:converter") is team_codecs.converter
    assert load_data_converter("team_codecs.make_converter") is team_codecs.converter
    assert load_data_converter(None) is temporalio.converter.DataConverter.default
    [interceptor] = load_interceptors(["team_codecs:Tracing"])
    assert isinstance(interceptor, team_codecs.Tracing)


def test_a_session_uses_the_pyproject_options(project: Path, database: str) -> None:
    import team_codecs

    _pyproject(project, 'task_queue = "etl"\ndata_converter = "team_codecs:converter"\n'
                        'interceptors = ["team_codecs:Tracing", "team_codecs:ClientTracing"]\n')
    session, _ = nb.connect(database, notebook="cfg")
    try:
        assert session.client.data_converter is team_codecs.converter
        assert [type(i) for i in session.client.config()["interceptors"]] == \
            [team_codecs.ClientTracing]
        assert [type(i) for i in session.worker_interceptors] == [team_codecs.Tracing]
        cell = session.define('''
from dbosify import workflow

@workflow.defn
class Hello:
    @workflow.run
    async def run(self, name: str) -> str:
        return f"hello {name}"
''')
        assert cell.task_queue == "etl"
        assert session.execute("Hello", "Ann", timeout=20) == "hello Ann"
        worker = session.workers[cell.version]
        assert {type(i) for i in worker._interceptors} == {team_codecs.Tracing,
                                                          team_codecs.ClientTracing}
    finally:
        nb.close()
