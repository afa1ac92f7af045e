"""Sinks: where an ingest writes its batches, each write idempotent.

Every sink records the batches it committed (pipeline, table, load, the cursor the batch
started from, where it ended) together with the rows, in one transaction (or, for files, by naming the
batch's file after it). A batch written again after a crash finds its record and writes
nothing, so no row is written twice; the next run of an incremental pipeline starts from the
last recorded cursor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from temporalio.exceptions import ApplicationError

from dbosify.pipelines._schema import (
    Row,
    Schema,
    SchemaConflictError,
    evolve,
    infer,
    normalise,
)
from dbosify.pipelines._sources import RawCsv

WriteDisposition = Literal["append", "replace", "merge"]
"""``append`` adds the rows; ``replace`` makes the run's rows the table's whole content (its
first batch empties the table in the same transaction); ``merge`` inserts or updates rows by
the primary key."""

LEDGER = "_dbosify_pipeline_batches"
"""The table (in SQL sinks) recording committed batches."""


@dataclass
class BatchWrite:
    """One batch for a sink."""

    pipeline: str
    load_id: str
    """The same for every run of an incremental pipeline; one per run otherwise."""
    cursor_from: Any
    cursor_to: Any
    rows: list[Row]
    disposition: WriteDisposition = "append"
    primary_key: Sequence[str] = ()
    first: bool = False
    """The first batch of its load (``replace`` empties the table then)."""
    raw: RawCsv | None = None
    """The batch as CSV lines (then ``rows`` is empty), for a sink that ``accepts_raw_csv``."""

    @property
    def count(self) -> int:
        return self.raw.count if self.raw is not None else len(self.rows)

    @property
    def key(self) -> str:
        return json.dumps(self.cursor_from, sort_keys=True, default=str)


@dataclass
class Written:
    """What a write did."""

    rows: int
    cursor: Any
    """The batch's end cursor as recorded (the earlier attempt's, if it had committed)."""
    already: bool = False
    """The batch had been committed before: nothing was written this time."""


class Sink(ABC):
    """A destination. Subclass it for one of your own: ``write`` must be idempotent per
    (pipeline, load_id, cursor_from) and ``last_cursor`` must answer from the same records."""

    supports_merge: bool = True
    accepts_raw_csv: bool = False
    """Whether ``write`` takes a batch as raw CSV lines (``BatchWrite.raw``)."""

    @abstractmethod
    def write(self, batch: BatchWrite) -> Written:
        """Commit ``batch`` unless it was committed before."""

    @abstractmethod
    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        """(True, cursor) after the last committed batch of ``pipeline``'s load, or
        (False, None) when it has none."""

    def describe(self) -> str:
        return type(self).__name__


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed(schema: Schema, keep_nulls: bool) -> Schema:
    """The columns to make a table with: those with a type (all of them when every column is
    null so far, or when ``keep_nulls``)."""
    typed = {c: t for c, t in schema.items() if t != "null"}
    return dict(schema) if keep_nulls or not typed else typed


def _dedupe(rows: list[Row], key: Sequence[str]) -> list[Row]:
    """The last row per primary key (a batch may update one key twice)."""
    latest: dict[tuple[Any, ...], Row] = {}
    for row in rows:
        latest[tuple(row.get(k) for k in key)] = row
    return list(latest.values())


def _check_key(batch: BatchWrite, where: str) -> None:
    if batch.disposition != "merge":
        return
    if not batch.primary_key:
        raise ApplicationError(f"merge into {where} needs a primary_key", non_retryable=True)
    for row in batch.rows:
        missing = [k for k in batch.primary_key if row.get(k) is None]
        if missing:
            raise ApplicationError(f"a row has no value for primary key column(s) {missing} "
                                   f"(merging into {where}): {row!r:.200}",
                                   type="MissingPrimaryKey", non_retryable=True)


# Postgres ---------------------------------------------------------------------------------------

_PG_TYPES = {"bigint": "bigint", "double": "double precision", "boolean": "boolean",
             "text": "text", "timestamp": "timestamp", "date": "date", "json": "jsonb",
             "null": "text"}
_PG_BACK = {"bigint": "bigint", "integer": "bigint", "smallint": "bigint",
            "double precision": "double", "real": "double", "numeric": "double",
            "boolean": "boolean", "text": "text", "character varying": "text",
            "character": "text", "timestamp without time zone": "timestamp",
            "timestamp with time zone": "timestamp", "date": "date", "jsonb": "json",
            "json": "json"}


@dataclass
class PostgresTable(Sink):
    """A Postgres table, written in bulk through ``COPY`` (merge: ``COPY`` into a temporary
    table, then ``INSERT ... ON CONFLICT DO UPDATE``). Made on the first batch with the
    batch's columns (the primary key as its key); new columns are added as they appear.

    >>> PostgresTable("postgresql://postgres@127.0.0.1/shop", "orders")  # doctest: +SKIP
    """

    url: str
    table: str
    schema: str = "public"
    accepts_raw_csv = True

    _conn: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False,
                                  compare=False)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[Any]:
        """One transaction on this sink's connection (kept open between batches: a pipeline
        writes one batch at a time, and connecting costs as much as a small batch)."""
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed:
                url = self.url.replace("postgresql+psycopg://", "postgresql://")
                try:
                    self._conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
                except psycopg.OperationalError as err:
                    first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                    raise ApplicationError(f"cannot reach the sink's Postgres: {first}",
                                           type="SinkUnreachable") from None
                self._ensure_ledger(self._conn)
            conn = self._conn
            try:
                with conn.transaction():
                    yield conn
            except psycopg.OperationalError:
                conn.close()  # a broken connection is made anew by the next attempt
                raise

    @property
    def _qualified(self) -> str:
        return f"{_ident(self.schema)}.{_ident(self.table)}"

    def _ensure_ledger(self, conn: Any) -> None:
        """Make the ledger (once per connection, committed at once)."""
        # Two workers making it at once would collide on the catalog.
        conn.execute("SELECT pg_advisory_lock(hashtext('dbosify.pipelines'))")
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_ident(self.schema)}.{LEDGER} ("
                "seq bigserial, pipeline text NOT NULL, table_name text NOT NULL, "
                "load_id text NOT NULL, cursor_from text NOT NULL, cursor_to text, "
                "row_count bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (pipeline, table_name, load_id, cursor_from))")
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('dbosify.pipelines'))")

    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT cursor_to FROM {_ident(self.schema)}.{LEDGER} WHERE pipeline = %s "
                "AND table_name = %s AND load_id = %s ORDER BY seq DESC LIMIT 1",
                (pipeline, self.table, load_id)).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def _columns(self, conn: Any) -> Schema:
        found = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (self.schema, self.table)).fetchall()
        return {name: _PG_BACK.get(kind, kind) for name, kind in found}

    def write(self, batch: BatchWrite) -> Written:
        where = f"Postgres table {self.schema}.{self.table}"
        _check_key(batch, where)
        # A raw CSV batch's types come from a sample; Postgres checks every value as it loads.
        sample = batch.raw.rows(1000) if batch.raw is not None else batch.rows
        schema = infer(sample, f"the batch for {where}")
        if batch.raw is not None:
            schema = {c: schema.get(c, "null") for c in batch.raw.header}
        with self._connect() as conn:
            # One writer per pipeline at a time: an attempt that timed out may still be
            # running while its retry starts.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (batch.pipeline,))
            done = conn.execute(
                f"SELECT cursor_to, row_count FROM {_ident(self.schema)}.{LEDGER} "
                "WHERE pipeline = %s AND table_name = %s AND load_id = %s AND cursor_from = %s",
                (batch.pipeline, self.table, batch.load_id, batch.key)).fetchone()
            if done is not None:
                return Written(int(done[1]), json.loads(done[0]), already=True)
            existing = self._columns(conn)
            # A column with only nulls so far is made when a value shows its type (a raw CSV
            # batch names every column of its header: those are made, as text if null).
            keep_nulls = batch.raw is not None
            if not existing:
                made = _typed(schema, keep_nulls)
                if made:
                    self._create(conn, made, batch.primary_key)
                    existing = dict(made)
            else:
                for column in evolve(existing, schema, where):
                    if schema[column] != "null" or keep_nulls:
                        conn.execute(f"ALTER TABLE {self._qualified} ADD COLUMN "
                                     f"{_ident(column)} {_PG_TYPES[schema[column]]}")
                        existing[column] = schema[column]
            if batch.first and batch.disposition == "replace" and existing:
                conn.execute(f"DELETE FROM {self._qualified}")
            rows = batch.rows
            if batch.raw is not None:
                self._copy_raw(conn, batch.raw, where)
            elif rows and not any(c in existing for c in schema):
                # Every value of these rows is null, in columns not made yet.
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {self._qualified} DEFAULT VALUES",
                                    [()] * len(rows))
            elif rows:
                columns = [c for c in schema if c in existing]
                if batch.disposition == "merge":
                    self._merge(conn, _dedupe(rows, batch.primary_key), columns, schema,
                                batch.primary_key)
                else:
                    self._copy(conn, self._qualified, rows, columns, schema)
            conn.execute(
                f"INSERT INTO {_ident(self.schema)}.{LEDGER} "
                "(pipeline, table_name, load_id, cursor_from, cursor_to, row_count) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (batch.pipeline, self.table, batch.load_id, batch.key,
                 json.dumps(batch.cursor_to, default=str), batch.count))
            self.before_commit(batch)
        return Written(batch.count, batch.cursor_to)

    def before_commit(self, batch: BatchWrite) -> None:
        """Called with the batch written but not committed (a hook for tests and logging)."""

    def _create(self, conn: Any, schema: Schema, key: Sequence[str]) -> None:
        columns = ", ".join(f"{_ident(c)} {_PG_TYPES[t]}" for c, t in schema.items())
        pk = f", PRIMARY KEY ({', '.join(_ident(k) for k in key)})" if key else ""
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(self.schema)}")
        conn.execute(f"CREATE TABLE {self._qualified} ({columns}{pk})")

    def _copy_raw(self, conn: Any, raw: RawCsv, where: str) -> None:
        import psycopg

        names = ", ".join(_ident(c) for c in raw.header)
        try:
            with conn.cursor() as cur, cur.copy(
                    f"COPY {self._qualified} ({names}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(raw.data)
        except psycopg.errors.DataError as err:
            detail = str(err).strip().splitlines()[0]
            raise SchemaConflictError(
                f"a value of the batch does not fit {where}: {detail}; nothing of this batch "
                "was written and the cursor did not move") from None

    @staticmethod
    def _copy(conn: Any, target: str, rows: list[Row], columns: list[str],
              schema: Schema) -> None:
        plain = all(schema[c] in ("bigint", "text", "boolean", "timestamp", "date")
                    for c in columns)
        names = ", ".join(_ident(c) for c in columns)
        with conn.cursor() as cur, cur.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            if plain:
                for row in rows:
                    copy.write_row([row.get(c) for c in columns])
            else:
                kinds = [schema[c] for c in columns]
                for row in rows:
                    copy.write_row([normalise(row.get(c), k) for c, k in zip(columns, kinds, strict=True)])

    def _merge(self, conn: Any, rows: list[Row], columns: list[str], schema: Schema,
               key: Sequence[str]) -> None:
        import psycopg

        conn.execute(f"CREATE TEMPORARY TABLE dbosify_merge (LIKE {self._qualified}) "
                     "ON COMMIT DROP")
        self._copy(conn, "dbosify_merge", rows, columns, schema)
        names = ", ".join(_ident(c) for c in columns)
        updates = ", ".join(f"{_ident(c)} = EXCLUDED.{_ident(c)}" for c in columns
                            if c not in key) or None
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        try:
            conn.execute(f"INSERT INTO {self._qualified} ({names}) SELECT {names} FROM "
                         f"dbosify_merge ON CONFLICT ({', '.join(_ident(k) for k in key)}) "
                         f"{action}")
        except psycopg.errors.InvalidColumnReference:
            raise ApplicationError(
                f"{self.schema}.{self.table} has no primary key or unique constraint on "
                f"{list(key)}: add one (merge upserts by it), or let the pipeline create "
                "the table", type="SinkSchema", non_retryable=True) from None

    def describe(self) -> str:
        return f"Postgres table {self.schema}.{self.table}"


# SQLite -----------------------------------------------------------------------------------------

_SQLITE_TYPES = {"bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN", "text": "TEXT",
                 "timestamp": "TIMESTAMP", "date": "DATE", "json": "JSON", "null": "TEXT"}
_SQLITE_BACK = {v: k for k, v in _SQLITE_TYPES.items() if k != "null"} | {
    "INTEGER": "bigint", "INT": "bigint", "REAL": "double", "FLOAT": "double", "": "text",
    "VARCHAR": "text", "NUMERIC": "double"}


@dataclass
class SqliteTable(Sink):
    """A SQLite table (``path`` is a file path or a ``sqlite:///`` URL). Made on the first
    batch; new columns are added as they appear; merge upserts by the primary key."""

    path: str | os.PathLike[str]
    table: str

    def _file(self) -> str:
        text = str(self.path)
        return text[len("sqlite:///"):] if text.startswith("sqlite:///") else text

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._file(), timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _ensure_ledger(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER} (seq INTEGER PRIMARY KEY "
                     "AUTOINCREMENT, pipeline TEXT NOT NULL, table_name TEXT NOT NULL, "
                     "load_id TEXT NOT NULL, cursor_from TEXT NOT NULL, cursor_to TEXT, "
                     "row_count INTEGER NOT NULL, "
                     "committed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, "
                     "UNIQUE (pipeline, table_name, load_id, cursor_from))")

    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        conn = self._connect()
        try:
            self._ensure_ledger(conn)
            row = conn.execute(f"SELECT cursor_to FROM {LEDGER} WHERE pipeline = ? AND "
                               "table_name = ? AND load_id = ? ORDER BY seq DESC LIMIT 1",
                               (pipeline, self.table, load_id)).fetchone()
        finally:
            conn.close()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def write(self, batch: BatchWrite) -> Written:
        where = f"SQLite table {self.table}"
        _check_key(batch, where)
        schema = infer(batch.rows, f"the batch for {where}")
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = self._write(conn, batch, schema, where)
                if not written.already:
                    self.before_commit(batch)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        return written

    def before_commit(self, batch: BatchWrite) -> None:
        """Called with the batch written but not committed (a hook for tests and logging)."""

    def _write(self, conn: sqlite3.Connection, batch: BatchWrite, schema: Schema,
               where: str) -> Written:
        self._ensure_ledger(conn)
        done = conn.execute(f"SELECT cursor_to, row_count FROM {LEDGER} WHERE pipeline = ? "
                            "AND table_name = ? AND load_id = ? AND cursor_from = ?",
                            (batch.pipeline, self.table, batch.load_id, batch.key)).fetchone()
        if done is not None:
            return Written(int(done[1]), json.loads(done[0]), already=True)
        table = _ident(self.table)
        existing = {r[1]: _SQLITE_BACK.get(str(r[2]).upper(), str(r[2]).lower())
                    for r in conn.execute(f"PRAGMA table_info({table})")}
        if not existing:
            made = _typed(schema, False)
            if made:
                columns = ", ".join(f"{_ident(c)} {_SQLITE_TYPES[t]}" for c, t in made.items())
                pk = (f", PRIMARY KEY ({', '.join(_ident(k) for k in batch.primary_key)})"
                      if batch.primary_key else "")
                conn.execute(f"CREATE TABLE {table} ({columns}{pk})")
                existing = dict(made)
        else:
            for column in evolve(existing, schema, where):
                if schema[column] != "null":  # made when a value shows its type
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {_ident(column)} "
                                 f"{_SQLITE_TYPES[schema[column]]}")
                    existing[column] = schema[column]
        if batch.first and batch.disposition == "replace" and existing:
            conn.execute(f"DELETE FROM {table}")
        rows = batch.rows
        if rows and not any(c in existing for c in schema):
            # Every value of these rows is null, in columns not made yet.
            conn.executemany(f"INSERT INTO {table} DEFAULT VALUES", [()] * len(rows))
        elif rows:
            columns_list = [c for c in schema if c in existing]
            names = ", ".join(_ident(c) for c in columns_list)
            marks = ", ".join("?" for _ in columns_list)
            sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"
            if batch.disposition == "merge":
                rows = _dedupe(rows, batch.primary_key)
                updates = ", ".join(f"{_ident(c)} = excluded.{_ident(c)}" for c in columns_list
                                    if c not in batch.primary_key)
                action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
                sql += (f" ON CONFLICT ({', '.join(_ident(k) for k in batch.primary_key)}) "
                        f"{action}")
            kinds = [schema[c] for c in columns_list]
            values = [tuple(_sqlite_value(row.get(c), k) for c, k in zip(columns_list, kinds, strict=True))
                      for row in rows]
            try:
                conn.executemany(sql, values)
            except sqlite3.OperationalError as err:
                if "ON CONFLICT clause does not match" not in str(err):
                    raise
                raise ApplicationError(
                    f"{self.table} has no primary key or unique constraint on "
                    f"{list(batch.primary_key)}: add one (merge upserts by it), or let the "
                    "pipeline create the table", type="SinkSchema", non_retryable=True
                ) from None
        conn.execute(f"INSERT INTO {LEDGER} (pipeline, table_name, load_id, cursor_from, "
                     "cursor_to, row_count) VALUES (?, ?, ?, ?, ?, ?)",
                     (batch.pipeline, self.table, batch.load_id, batch.key,
                      json.dumps(batch.cursor_to, default=str), len(rows)))
        return Written(len(rows), batch.cursor_to)

    def describe(self) -> str:
        return f"SQLite table {self.table} in {self._file()}"


def _sqlite_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind in ("timestamp", "date"):
        return value.isoformat() if hasattr(value, "isoformat") else value
    return normalise(value, kind)


# Files ------------------------------------------------------------------------------------------

_STATE_FILE = "_dbosify_state.json"


@dataclass
class _FileSink(Sink):
    """One file per batch, named after (pipeline, load, cursor_from), so a batch written again
    replaces its own file; a state file records the committed batches."""

    folder: str | os.PathLike[str]
    supports_merge = False
    suffix = ""

    def _state(self) -> dict[str, Any]:
        path = Path(self.folder) / _STATE_FILE
        if not path.exists():
            return {"batches": {}, "last": {}, "schema": {}}
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def _save_state(self, state: dict[str, Any]) -> None:
        path = Path(self.folder) / _STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, default=str))
        os.replace(temporary, path)

    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        last = self._state()["last"].get(f"{pipeline}\x00{load_id}")
        return (False, None) if last is None else (True, last)

    def write(self, batch: BatchWrite) -> Written:
        if batch.disposition == "merge":
            raise ApplicationError(f"{self.describe()} cannot merge: use a table sink",
                                   non_retryable=True)
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self._state()
        ident = f"{batch.pipeline}\x00{batch.load_id}\x00{batch.key}"
        if ident in state["batches"]:
            rows, cursor = state["batches"][ident]
            return Written(int(rows), cursor, already=True)
        where = self.describe()
        schema = infer(batch.rows, f"the batch for {where}")
        known: dict[str, str] = state["schema"].get(batch.pipeline, {})
        evolve(known, schema, where)
        for column, kind in schema.items():
            if known.get(column, "null") == "null":
                known[column] = kind
        digest = hashlib.sha1(ident.encode()).hexdigest()[:16]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in batch.pipeline)
        if batch.first and batch.disposition == "replace":
            for old in folder.glob(f"{safe}-*{self.suffix}"):
                old.unlink()
        if batch.rows:
            target = folder / f"{safe}-{len(state['batches']):06d}-{digest}{self.suffix}"
            temporary = target.with_name(target.name + ".tmp")
            self._write_file(temporary, batch.rows, schema)
            os.replace(temporary, target)
        state["batches"][ident] = [len(batch.rows), batch.cursor_to]
        state["last"][f"{batch.pipeline}\x00{batch.load_id}"] = batch.cursor_to
        state["schema"][batch.pipeline] = known
        self._save_state(state)
        return Written(len(batch.rows), batch.cursor_to)

    @abstractmethod
    def _write_file(self, path: Path, rows: list[Row], schema: Schema) -> None: ...

    def describe(self) -> str:
        return f"{type(self).__name__} in {self.folder}"


@dataclass
class ParquetFiles(_FileSink):
    """One Parquet file per batch in ``folder`` (needs the ``pipelines`` extra: pyarrow)."""

    suffix = ".parquet"

    def _write_file(self, path: Path, rows: list[Row], schema: Schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {c: [normalise(r.get(c), t) if t == "json" else r.get(c) for r in rows]
                   for c, t in schema.items()}
        pq.write_table(pa.table(columns), path)


@dataclass
class CsvFiles(_FileSink):
    """One CSV file per batch in ``folder``, each with its header."""

    suffix = ".csv"

    def _write_file(self, path: Path, rows: list[Row], schema: Schema) -> None:
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(schema))
            for row in rows:
                writer.writerow([normalise(row.get(c), t) for c, t in schema.items()])


# DataFrame --------------------------------------------------------------------------------------


@dataclass
class DataFrameSink(Sink):
    """Rows kept in this process, read as a pandas DataFrame through :attr:`frame` (for a
    notebook: the run's activities must run in the notebook's own worker). pandas is imported
    only when ``frame`` is read."""

    name: str = "frame"
    _rows: list[Row] = field(default_factory=list, repr=False)
    _batches: dict[str, tuple[int, Any]] = field(default_factory=dict, repr=False)
    _last: dict[str, Any] = field(default_factory=dict, repr=False)
    _schema: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        key = f"{pipeline}\x00{load_id}"
        return (key in self._last, self._last.get(key))

    def write(self, batch: BatchWrite) -> Written:
        with self._lock:
            ident = f"{batch.pipeline}\x00{batch.load_id}\x00{batch.key}"
            if ident in self._batches:
                rows, cursor = self._batches[ident]
                return Written(rows, cursor, already=True)
            _check_key(batch, self.describe())
            schema = infer(batch.rows, f"the batch for {self.describe()}")
            evolve(self._schema, schema, self.describe())
            for column, kind in schema.items():
                if self._schema.get(column, "null") == "null":
                    self._schema[column] = kind
            if batch.first and batch.disposition == "replace":
                self._rows.clear()
            if batch.disposition == "merge":
                key = tuple(batch.primary_key)
                index = {tuple(r.get(k) for k in key): i for i, r in enumerate(self._rows)}
                for row in _dedupe(batch.rows, key):
                    at = index.get(tuple(row.get(k) for k in key))
                    if at is None:
                        index[tuple(row.get(k) for k in key)] = len(self._rows)
                        self._rows.append(dict(row))
                    else:
                        self._rows[at] = {**self._rows[at], **row}
            else:
                self._rows.extend(dict(r) for r in batch.rows)
            self._batches[ident] = (len(batch.rows), batch.cursor_to)
            self._last[f"{batch.pipeline}\x00{batch.load_id}"] = batch.cursor_to
            return Written(len(batch.rows), batch.cursor_to)

    @property
    def rows(self) -> list[Row]:
        """A copy of the rows written so far."""
        with self._lock:
            return [dict(r) for r in self._rows]

    @property
    def frame(self) -> Any:
        """The rows as a pandas DataFrame (columns in the order they appeared)."""
        import pandas

        with self._lock:
            return pandas.DataFrame(self._rows, columns=list(self._schema))

    def describe(self) -> str:
        return f"DataFrame sink {self.name!r}"


__all__ = ["BatchWrite", "CsvFiles", "DataFrameSink", "ParquetFiles", "PostgresTable", "Sink",
           "SqliteTable", "WriteDisposition", "Written"]
