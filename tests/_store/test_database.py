"""Where the data lives (DESIGN §3) and clear errors for bad URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbosify._exceptions import DatabaseError
from dbosify._store._database import is_temporal_target, redact, resolve_database_url


def test_embedded_default_under_the_current_directory(tmp_path: Path) -> None:
    db = resolve_database_url(None)
    assert db.dialect == "sqlite"
    assert db.url == f"sqlite:///{tmp_path / '.dbosify' / 'dbosify.sqlite'}"


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_SYSTEM_DATABASE_URL", "postgresql://a@h/dbos_db")
    assert resolve_database_url(None).url == "postgresql://a@h/dbos_db"
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", "postgresql://a@h/ours")
    assert resolve_database_url(None).url == "postgresql://a@h/ours"
    assert resolve_database_url("postgresql://a@h/explicit").url == "postgresql://a@h/explicit"


def test_temporal_address_means_the_configured_database(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_temporal_target("localhost:7233") and not is_temporal_target("sqlite:///x")
    monkeypatch.setenv("DBOSIFY_DATABASE_URL", "postgresql://a@h/ours")
    assert resolve_database_url("localhost:7233").url == "postgresql://a@h/ours"


def test_relative_sqlite_paths_resolve_against_the_current_directory(tmp_path: Path) -> None:
    assert resolve_database_url("sqlite:///runs.sqlite").url == f"sqlite:///{tmp_path}/runs.sqlite"


@pytest.mark.parametrize("url, problem", [
    ("nonsense", "malformed database URL"),
    ("mysql://root@localhost/db", "unsupported database URL scheme 'mysql'"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("postgresql://user:pw@localhost:5432", "names no database"),
])
def test_bad_urls_are_clear(url: str, problem: str) -> None:
    with pytest.raises(DatabaseError, match=problem):
        resolve_database_url(url)


def test_redact_hides_the_password() -> None:
    assert "s3cret" not in redact("postgresql://user:s3cret@host:5432/db")
    assert "user" in redact("postgresql://user:s3cret@host:5432/db")
