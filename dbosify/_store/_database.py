"""Which database a process talks to, and opening it (DESIGN §3)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbosify._exceptions import DatabaseError
from dbosify._store import _tables

logger = logging.getLogger("dbosify")

EMBEDDED_PATH = Path(".dbosify") / "dbosify.sqlite"
"""The embedded default, relative to the project's root folder (:func:`project_root`)."""

POSTGRES_SCHEMA = "dbosify"
"""Postgres schema holding dbosify's own tables (DBOS's live in ``dbos``)."""

# A Temporal frontend address such as "localhost:7233": no scheme, a host and a port.
_TEMPORAL_TARGET = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d+$")


def is_temporal_target(target: str) -> bool:
    """Whether ``target`` is a Temporal server address rather than a database URL."""
    return "://" not in target and bool(_TEMPORAL_TARGET.match(target))


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


@dataclass(frozen=True)
class DatabaseURL:
    """A resolved database location."""

    url: str
    """As given to DBOS: ``sqlite:///abs/path`` or ``postgresql://...``."""
    dialect: str
    """``sqlite`` or ``postgresql``."""

    @property
    def redacted(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    @property
    def sqlalchemy_url(self) -> str:
        """The URL for dbosify's own SQLAlchemy engine."""
        if self.dialect == "postgresql":
            return "postgresql+psycopg://" + self.url.split("://", 1)[1]
        return self.url


def project_root(start: Path | None = None) -> Path:
    """The folder the embedded default lives in: the nearest one upward from ``start`` (the
    current directory) that holds ``.dbosify/`` or ``pyproject.toml``, else ``start`` itself. So
    a notebook in ``notebooks/`` and a command run at the project's root share one database."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dbosify").is_dir() or (folder / "pyproject.toml").is_file():
            return folder
    return here


def project_settings(start: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """``[tool.dbosify]`` of the nearest ``pyproject.toml`` upward from ``start`` (the current
    directory), and that file's folder; ``({}, None)`` when there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            try:
                import tomllib
            except ImportError:  # Python 3.10: no TOML reader in the standard library.
                return {}, folder
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as err:
                raise DatabaseError(f"cannot read {path}: {err}; fix the file or remove its "
                                    "[tool.dbosify] table") from None
            table = data.get("tool", {}).get("dbosify", {})
            if not isinstance(table, dict):
                raise DatabaseError(f"[tool.dbosify] in {path} must be a table")
            return table, folder
    return {}, None


def resolve_database_url(url: str | None = None) -> DatabaseURL:
    """Resolve where data lives (DESIGN §3): the argument, ``DBOSIFY_DATABASE_URL``,
    ``DBOS_SYSTEM_DATABASE_URL``, ``database`` in ``[tool.dbosify]`` of the nearest
    ``pyproject.toml``, else the embedded SQLite file ``.dbosify/dbosify.sqlite`` in
    :func:`project_root`.

    A Temporal address (``"localhost:7233"``) resolves like no argument, so Temporal samples run
    with only their imports changed.

    >>> resolve_database_url("sqlite:///tmp/x.sqlite").dialect
    'sqlite'
    """
    given = url
    if url is not None and is_temporal_target(url):
        url = None
    url = url or os.environ.get("DBOSIFY_DATABASE_URL") or os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    base: Path | None = None
    if not url:
        settings, base = project_settings()
        configured = settings.get("database")
        if configured is not None and not isinstance(configured, str):
            raise DatabaseError(f"database in [tool.dbosify] of {base}/pyproject.toml must be "
                                "a URL string")
        url = configured or None
    if given is not None and url is not None and given != url:
        _note_once(given, redact(url), "configured")
    if not url:
        path = (project_root() / EMBEDDED_PATH).resolve()
        if given is not None:
            _note_once(given, str(path), "embedded")
        return DatabaseURL(f"sqlite:///{path}", "sqlite")
    return _parse(url, base)


_noted: set[tuple[str, str]] = set()


def _note_once(address: str, target: str, kind: str) -> None:
    """Say once per process where a Temporal address leads (not on every reconnect)."""
    if (address, target) not in _noted:
        _noted.add((address, target))
        logger.info("Temporal address %s: using the %s database %s", address, kind, target)


def _parse(url: str, base: Path | None = None) -> DatabaseURL:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseError(
            f"malformed database URL {redact(url)!r}: expected 'postgresql://user@host:port/db' "
            "or 'sqlite:///path/to/file.sqlite'"
        )
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        try:
            parsed = make_url("postgresql+psycopg://" + rest)
        except Exception as err:
            raise DatabaseError(f"malformed database URL {redact(url)!r}: {err}") from None
        if not parsed.database:
            raise DatabaseError(
                f"database URL {redact(url)!r} names no database: add one, e.g. "
                "'postgresql://postgres@localhost:5432/dbosify'"
            )
        return DatabaseURL("postgresql://" + rest, "postgresql")
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path or path in (":memory:", "/:memory:") or "mode=memory" in path:
            raise DatabaseError(
                "an in-memory SQLite database cannot hold durable runs: give a file, e.g. "
                "'sqlite:///runs.sqlite', or leave the URL out for the embedded default"
            )
        resolved = Path(path.split("?", 1)[0]).expanduser()
        if not resolved.is_absolute():
            # Relative to the pyproject.toml that named it, else to the current directory.
            resolved = ((base or Path.cwd()) / resolved).resolve()
        return DatabaseURL(f"sqlite:///{resolved}", "sqlite")
    raise DatabaseError(
        f"unsupported database URL scheme {scheme!r} in {redact(url)!r}: dbosify runs on "
        "'postgresql://...' or 'sqlite:///...'"
    )


def create_engine(db: DatabaseURL) -> sa.Engine:
    """An engine for dbosify's own tables, after checking the database answers."""
    # A lost Postgres connection is replaced before use; a SQLite file cannot be lost.
    kwargs: dict[str, Any] = {"pool_pre_ping": db.dialect == "postgresql"}
    if db.dialect == "sqlite":
        path = Path(db.url.split("sqlite:///", 1)[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(db.sqlalchemy_url, connect_args={"timeout": 30}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _configure(dbapi_conn: Any, _record: Any) -> None:
            # IMMEDIATE: writers serialize up front instead of failing on a lock upgrade.
            dbapi_conn.isolation_level = "IMMEDIATE"
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        # WAL persists in the file; DBOS leaves the journal in delete mode (DESIGN §10).
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    else:
        engine = sa.create_engine(
            db.sqlalchemy_url,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": 10},
            execution_options={"schema_translate_map": {None: POSTGRES_SCHEMA}},
            **kwargs,
        )
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as err:
        engine.dispose()
        if db.dialect == "postgresql" and "does not exist" in str(err):
            _create_postgres_database(db)
            return create_engine(db)
        raise DatabaseError(
            f"cannot reach the database {db.redacted}: {_first_line(err)}. Check that it is running "
            "and the URL is right (DBOSIFY_DATABASE_URL)."
        ) from None
    migrate(engine, db)
    return engine


def _create_postgres_database(db: DatabaseURL) -> None:
    parsed = make_url(db.sqlalchemy_url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = parsed.database or ""
            quoted = conn.dialect.identifier_preparer.quote(name)
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
    except Exception as err:
        if "already exists" not in str(err):
            raise DatabaseError(
                f"cannot create the database {db.redacted}: {_first_line(err)}"
            ) from None
    finally:
        admin.dispose()


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return redact(text.splitlines()[0] if text else type(err).__name__)


def migrate(engine: sa.Engine, db: DatabaseURL) -> None:
    """Create dbosify's tables, or check that the stored schema is one this version reads."""
    with engine.begin() as conn:
        if db.dialect == "postgresql":
            # Serialize concurrent first connects from several processes.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7233001)")
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {POSTGRES_SCHEMA}")
        else:
            # pysqlite begins lazily, before the first write; take the write lock now so two
            # processes connecting at once do not both see an empty database.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        _tables.metadata.create_all(conn, checkfirst=True)
        row = conn.execute(
            sa.select(_tables.meta.c.value).where(_tables.meta.c.key == "schema_version")
        ).scalar()
        if row is None:
            conn.execute(sa.insert(_tables.meta).values(key="schema_version",
                                                        value=str(_tables.SCHEMA_VERSION)))
        elif int(row) < _tables.SCHEMA_VERSION:
            _upgrade(conn, db, int(row))
        elif int(row) > _tables.SCHEMA_VERSION:
            raise DatabaseError(
                f"the database {db.redacted} was written by a newer dbosify (schema version {row}; "
                f"this one reads up to {_tables.SCHEMA_VERSION}): upgrade dbosify, or use another "
                "database"
            )


def _upgrade(conn: sa.Connection, db: DatabaseURL, version: int) -> None:
    """Bring a database written by an older dbosify to this schema, keeping what it holds."""
    prefix = f"{POSTGRES_SCHEMA}." if db.dialect == "postgresql" else ""
    if version < 2:
        conn.exec_driver_sql(f"ALTER TABLE {prefix}dbosify_runs ADD COLUMN close_records TEXT")
        conn.exec_driver_sql(
            f"ALTER TABLE {prefix}dbosify_activity_tasks ADD COLUMN cancel_reason INTEGER")
    if version < 3:
        # Added in schema version 3: worker versioning (build ids) of runs and activity tasks.
        for table in ("dbosify_runs", "dbosify_activity_tasks"):
            if not _has_column(conn, db, table, "build_id"):
                conn.exec_driver_sql(f"ALTER TABLE {prefix}{table} ADD COLUMN build_id VARCHAR(255)")
    if version < 4:
        # Added in schema version 4: a child's root workflow and parent close policy (and a
        # run's own virtual clock, NULL for runs written before). Children
        # written before knew their parent only; for a child of a top-level run that is its
        # root. Their policy stays unknown (NULL): their parent's driver applies it.
        runs = f"{prefix}dbosify_runs"
        for column, kind in (("root_workflow_id", "VARCHAR(1000)"),
                             ("root_run_id", "VARCHAR(64)"), ("parent_close_policy", "SMALLINT"),
                             ("time_skipping", "TEXT")):
            if not _has_column(conn, db, "dbosify_runs", column):
                conn.exec_driver_sql(f"ALTER TABLE {runs} ADD COLUMN {column} {kind}")
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS dbosify_runs_by_parent ON {runs} "
                             "(parent_run_id) WHERE parent_run_id IS NOT NULL")
        conn.exec_driver_sql(
            f"UPDATE {runs} SET root_workflow_id = parent_workflow_id, "
            f"root_run_id = parent_run_id WHERE parent_run_id IS NOT NULL")
    conn.execute(sa.update(_tables.meta).where(_tables.meta.c.key == "schema_version")
                 .values(value=str(_tables.SCHEMA_VERSION)))


def _has_column(conn: sa.Connection, db: DatabaseURL, table: str, column: str) -> bool:
    schema = POSTGRES_SCHEMA if db.dialect == "postgresql" else None
    return column in {c["name"] for c in sa.inspect(conn).get_columns(table, schema=schema)}


_TRANSIENT_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "40001", "40P01", "25P03")
"""Connection exceptions, insufficient resources, the server shutting down or starting
(``AdminShutdown``: "terminating connection due to administrator command"), serialization
failures and deadlocks, a session ended while idle in a transaction."""


def is_transient(err: BaseException) -> bool:
    """Whether a database error may pass if the statement is tried again: the connection was
    lost or refused (a restart), the server is shutting down or starting, a serialization
    failure or deadlock, a busy SQLite file, an exhausted pool. DBOS retries its own statements
    on the same errors (its ``db_retry``); dbosify's are retried by ``Process.db_call``."""
    if isinstance(err, sa.exc.TimeoutError):
        return True  # Pool checkout.
    if not isinstance(err, sa.exc.DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    orig = err.orig
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    text = str(orig)
    if type(orig).__module__.startswith("sqlite3"):
        return "database is locked" in text or "database is busy" in text
    return isinstance(err, sa.exc.OperationalError) and any(part in text for part in (
        "connection failed", "server closed the connection", "consuming input failed",
        "connection is lost", "the connection is closed", "terminating connection"))

