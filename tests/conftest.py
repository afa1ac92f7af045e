"""Shared fixtures: every engine test runs on SQLite and on Postgres (DESIGN §8).

``database`` gives a database URL: a fresh SQLite file per test, or one Postgres database made
once per session and emptied per test. Without Postgres the Postgres cases skip with the reason,
except under ``DBOSIFY_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbosify._runtime._process import close_current
from dbosify.client import Client

PG_SERVER = os.environ.get("DBOSIFY_TEST_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432")
# One database per test session (pid), so concurrent sessions on one server do not empty each
# other's tables; dropped when the session ends.
PG_DATABASE = f"dbosify_test_{os.getpid()}"
REQUIRE_POSTGRES = os.environ.get("DBOSIFY_REQUIRE_POSTGRES") == "1"

_pg_state: dict[str, str | None] = {}


def postgres_url() -> str | None:
    """The test database's URL, creating it once; None when Postgres cannot be reached."""
    if "url" in _pg_state:
        return _pg_state["url"]
    admin = sa.create_engine(PG_SERVER.replace("postgresql://", "postgresql+psycopg://")
                             + "/postgres", isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": PG_DATABASE}).first()
            if not exists:
                conn.exec_driver_sql(f"CREATE DATABASE {PG_DATABASE}")
        _pg_state["url"] = f"{PG_SERVER}/{PG_DATABASE}"
    except Exception as err:  # Unreachable: the Postgres cases skip (or fail, in CI).
        _pg_state["url"] = None
        _pg_state["error"] = str(err).splitlines()[0]
    finally:
        admin.dispose()
    return _pg_state["url"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop this session's Postgres database."""
    if not _pg_state.get("url"):
        return
    close_current()
    admin = sa.create_engine(PG_SERVER.replace("postgresql://", "postgresql+psycopg://")
                             + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    except Exception:  # Leaving it behind is harmless; the next session uses another name.
        pass
    finally:
        admin.dispose()


def require_postgres() -> str:
    """The Postgres URL, or skip (fail under DBOSIFY_REQUIRE_POSTGRES=1) with the reason."""
    url = postgres_url()
    if url is None:
        reason = f"needs Postgres at {PG_SERVER} ({_pg_state.get('error')})"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " and DBOSIFY_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    return url


def empty_postgres(url: str) -> None:
    """Remove every run and DBOS record, keeping the schemas (much faster than a new database)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            tables = conn.execute(sa.text(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN "
                "('dbos', 'dbosify') AND tablename NOT IN ('dbos_migrations', 'dbosify_meta')"
            )).all()
            if tables:
                names = ", ".join(f'"{s}"."{t}"' for s, t in tables)
                conn.exec_driver_sql(f"TRUNCATE {names} CASCADE")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for one test, on each backend."""
    close_current()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dbosify.sqlite'}"
    else:
        url = require_postgres()
        empty_postgres(url)
    yield url
    close_current()


@pytest.fixture
async def client(database: str) -> AsyncIterator[Client]:
    """A client on the test's database."""
    yield await Client.connect(database)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedded default lives under the current directory: keep tests out of the checkout.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DBOSIFY_DATABASE_URL", raising=False)
    monkeypatch.delenv("DBOS_SYSTEM_DATABASE_URL", raising=False)
