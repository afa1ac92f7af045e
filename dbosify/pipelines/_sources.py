"""Sources: where an ingest reads its rows from, batch by batch, from a cursor.

A source reads deterministically: the same cursor gives the same rows (as long as the data it
covers has not changed), so a batch retried after a crash reads what the first attempt read.
Cursors are JSON values (they live in the workflow's durable state).
"""

from __future__ import annotations

import csv
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

from temporalio.exceptions import ApplicationError

from dbosify.pipelines._schema import Row


@dataclass
class RawCsv:
    """A batch of CSV rows as the file holds them (header apart), so a Postgres sink can
    ``COPY`` them as they are rather than row by row. Only made when Postgres would read every
    value as :class:`FileFolder` does (no quoted fields, conversions ``int``/``float``/``str``)."""

    header: list[str]
    data: bytes
    count: int
    types: Mapping[str, Callable[[str], Any]]

    def rows(self, limit: int | None = None) -> list[Row]:
        """The rows (the first ``limit`` of them), as FileFolder reads them."""
        data = self.data
        if limit is not None:
            data = b"\n".join(data.split(b"\n", limit)[:limit])
        return _csv_rows(self.header, csv.reader(data.decode("utf-8").splitlines()), self.types,
                         None)


class Batch:
    """What one read returned: the rows, where the next read starts (``cursor``, a JSON value)
    and whether the source had nothing more after them for now (``done``)."""

    def __init__(self, rows: list[Row] | None, cursor: Any, done: bool,
                 raw: RawCsv | None = None) -> None:
        self._rows = rows
        self.cursor = cursor
        self.done = done
        self.raw = raw

    @property
    def rows(self) -> list[Row]:
        if self._rows is None:
            self._rows = self.raw.rows() if self.raw is not None else []
        return self._rows

    @property
    def count(self) -> int:
        return self.raw.count if self._rows is None and self.raw is not None else len(self.rows)


class Source(ABC):
    """Reads rows from a cursor. Subclass it for a source of your own: ``read`` must return the
    same rows for the same cursor, and a cursor that is a JSON value."""

    @abstractmethod
    def read(self, cursor: Any, batch_size: int) -> Batch:
        """Up to ``batch_size`` rows after ``cursor`` (None: from the beginning)."""

    def describe(self) -> str:
        """A short name for messages."""
        return type(self).__name__


# SQL --------------------------------------------------------------------------------------------


def sqlalchemy_url(url: str) -> str:
    """A URL SQLAlchemy opens with psycopg 3 (``postgresql://`` means psycopg 2 to it)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


_ENGINES: dict[str, Any] = {}


@dataclass
class SqlQuery(Source):
    """The rows of a SQL query on Postgres or SQLite (any SQLAlchemy URL), read in order of
    ``cursor``, a column whose values are unique and only grow (an id, or a sequence number
    the writer sets). A new run reads only the rows past the last one committed.

    >>> SqlQuery("postgresql://localhost/shop", "SELECT id, total FROM orders", cursor="id")
    ... # doctest: +SKIP
    """

    url: str
    query: str
    cursor: str

    def read(self, cursor: Any, batch_size: int) -> Batch:
        import sqlalchemy as sa

        engine = _ENGINES.get(self.url)
        if engine is None:
            engine = _ENGINES[self.url] = sa.create_engine(sqlalchemy_url(self.url))
        column = '"' + self.cursor.replace('"', '""') + '"'
        where = "" if cursor is None else f" WHERE {column} > :cursor"
        text = (f"SELECT * FROM ({self.query}) AS dbosify_source{where} "
                f"ORDER BY {column} LIMIT :limit")
        with engine.connect() as conn:
            result = conn.execute(sa.text(text), {"cursor": cursor, "limit": batch_size})
            rows = [dict(r._mapping) for r in result]
        if rows and self.cursor not in rows[0]:
            raise ApplicationError(f"the query's rows have no column {self.cursor!r} (the "
                                   "cursor): select it", non_retryable=True)
        last = rows[-1][self.cursor] if rows else cursor
        # The cursor lives in the workflow's state: a JSON value (the database compares the
        # text form with the column as it did the value).
        if hasattr(last, "isoformat"):
            last = last.isoformat()
        elif last is not None and not isinstance(last, (int, float, str)):
            last = str(last)
        return Batch(rows, last, len(rows) < batch_size)

    def describe(self) -> str:
        return f"query on {self.url.rsplit('@', 1)[-1]}"


# Files in a folder ------------------------------------------------------------------------------


Format = Literal["csv", "jsonl", "parquet"]


@dataclass
class FileFolder(Source):
    """CSV, JSON-lines or Parquet files in a folder, read file by file in order of ``order``
    (``"name"`` or ``"mtime"``, the modification time). A file that arrives later is picked up
    by the next run when it sorts after the last one read, so name files so they sort by
    arrival (``2024-05-01.csv``), or order by ``mtime``. A file is read once: put new data in
    new files.

    CSV values are strings (an empty field is null) unless ``types`` converts them, e.g.
    ``types={"amount": float, "qty": int}``.
    """

    path: str | os.PathLike[str]
    pattern: str = "*.csv"
    format: Format | None = None
    """Taken from the pattern's suffix when not given."""
    order: Literal["name", "mtime"] = "name"
    types: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)

    def _format(self) -> Format:
        if self.format is not None:
            return self.format
        suffix = self.pattern.rsplit(".", 1)[-1].lower()
        if suffix in ("csv", "parquet"):
            return suffix  # type: ignore[return-value]
        if suffix in ("jsonl", "ndjson", "json"):
            return "jsonl"
        raise ApplicationError(f"cannot tell the format of {self.pattern!r}: pass "
                               "format='csv', 'jsonl' or 'parquet'", non_retryable=True)

    def _files(self) -> list[tuple[list[Any], Path]]:
        folder = Path(self.path)
        if not folder.is_dir():
            raise ApplicationError(f"the source folder {str(folder)!r} does not exist",
                                   type="SourceUnreachable")
        files = [p for p in folder.glob(self.pattern) if p.is_file()]
        keyed = [([p.stat().st_mtime, p.name] if self.order == "mtime" else [p.name], p)
                 for p in files]
        keyed.sort(key=lambda kp: kp[0])
        return keyed

    def read(self, cursor: Any, batch_size: int) -> Batch:
        key: list[Any] | None = cursor["key"] if cursor else None
        offset = int(cursor["offset"]) if cursor else 0
        complete = bool(cursor["complete"]) if cursor else False
        rows: list[Row] = []
        raw: RawCsv | None = None
        for file_key, path in self._files():
            if key is not None and file_key < key:
                continue
            if key is not None and file_key == key:
                if complete:
                    continue
                start = offset
            else:
                start = 0
            if not rows and self._raw_ok():
                raw, end, finished = self._read_raw(path, start, batch_size)
                if raw is not None:
                    # A raw batch comes from one file (its header describes every line).
                    key, offset, complete = file_key, end, finished
                    break
            got, end, finished = self._read_file(path, start, batch_size - len(rows))
            rows.extend(got)
            key, offset, complete = file_key, end, finished
            if len(rows) >= batch_size:
                break
        new_cursor = None if key is None else {"key": key, "offset": offset,
                                               "complete": complete}
        if raw is not None:
            more = raw.count >= batch_size or not complete
            return Batch(None, new_cursor, not (more or self._after(key)), raw)
        more = len(rows) >= batch_size
        return Batch(rows, new_cursor, not more)

    def _after(self, key: list[Any] | None) -> bool:
        """Whether a file sorts after ``key``."""
        return any(key is None or k > key for k, _ in self._files())

    def _raw_ok(self) -> bool:
        return self._format() == "csv" and all(t in (int, float, str)
                                               for t in self.types.values())

    def _read_raw(self, path: Path, start: int, limit: int) -> tuple[RawCsv | None, int, bool]:
        """Up to ``limit`` lines from ``start`` as a RawCsv, or None when a line holds a quote
        (a quoted field may span lines: the rows are parsed instead)."""
        with path.open("rb") as handle:
            header_line = handle.readline()
            header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
            position = max(start, len(header_line))
            handle.seek(position)
            data, count = _take_lines(handle, limit)
            if b'"' in data:
                return None, start, False
            end = position + len(data)
            finished = count < limit or end >= os.fstat(handle.fileno()).st_size
        if b"\n\n" in data or b"\n\r\n" in data or data[:1] in (b"\n", b"\r"):
            # Blank lines are no rows (COPY would refuse them).
            lines = [line for line in data.splitlines(keepends=True) if line.strip()]
            data, count = b"".join(lines), len(lines)
        return RawCsv(header, data, count, dict(self.types)), end, finished

    def _read_file(self, path: Path, start: int, limit: int) -> tuple[list[Row], int, bool]:
        """Up to ``limit`` rows from ``start`` (a byte offset; a row number for Parquet): the
        rows, where the next read starts, and whether the file is finished."""
        fmt = self._format()
        if fmt == "parquet":
            import pyarrow.parquet as pq  # The [pipelines] extra.

            table = pq.read_table(path)
            part = table.slice(start, limit).to_pylist()
            end = start + len(part)
            return part, end, end >= table.num_rows
        with path.open("rb") as handle:
            if fmt == "csv":
                return self._read_csv(handle, start, limit)
            return _read_jsonl(handle, start, limit)

    def _read_csv(self, handle: IO[bytes], start: int, limit: int) -> tuple[list[Row], int,
                                                                             bool]:
        header_line = handle.readline()
        header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
        position = max(start, len(header_line))
        handle.seek(position)

        def lines() -> Iterator[str]:
            # csv.reader pulls one line at a time and never reads ahead, so after each row
            # ``position`` is exactly where the next row begins.
            nonlocal position
            for line in handle:
                position += len(line)
                yield line.decode("utf-8")

        rows = _csv_rows(header, csv.reader(lines()), self.types, limit)
        finished = len(rows) < limit or handle.read(1) == b""
        return rows, position, finished

    def describe(self) -> str:
        return f"files {self.pattern} in {self.path}"


def _take_lines(handle: IO[bytes], limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` whole lines from ``handle``'s position, read in blocks (counting
    newlines in C is what keeps a bulk load near COPY's speed), and how many."""
    parts: list[bytes] = []
    count = 0
    while count < limit:
        block = handle.read(1 << 20)
        if not block:
            break
        found = block.count(b"\n")
        if count + found >= limit:
            cut = -1
            for _ in range(limit - count):
                cut = block.index(b"\n", cut + 1)
            parts.append(block[:cut + 1])
            return b"".join(parts), limit
        parts.append(block)
        count += found
    data = b"".join(parts)
    if data and not data.endswith(b"\n"):
        count += 1  # the file's last line, without its newline
    return data, count


def _csv_rows(header: list[str], reader: Iterator[list[str]],
              types: Mapping[str, Callable[[str], Any]], limit: int | None) -> list[Row]:
    rows: list[Row] = []
    for values in islice(reader, limit):
        if not values:
            continue
        row = {c: (v if v != "" else None) for c, v in zip(header, values, strict=False)}
        for column, convert in types.items():
            value = row.get(column)
            if value is not None:
                try:
                    row[column] = convert(value)
                except ValueError as err:
                    raise ApplicationError(
                        f"column {column!r}: cannot convert {value!r} with "
                        f"{getattr(convert, '__name__', convert)} ({err}); fix the file or "
                        "the source's types", type="SchemaConflict", non_retryable=True
                    ) from None
        rows.append(row)
    return rows


def _read_jsonl(handle: IO[bytes], start: int, limit: int) -> tuple[list[Row], int, bool]:
    handle.seek(start)
    position = start
    rows: list[Row] = []
    while len(rows) < limit:
        line = handle.readline()
        if not line:
            return rows, position, True
        position += len(line)
        if line.strip():
            rows.append(json.loads(line))
    return rows, position, handle.read(1) == b""


# HTTP -------------------------------------------------------------------------------------------


@dataclass
class HttpJson(Source):
    """A paginated JSON API: one page per batch.

    Pages are numbered (``?page=1``, ``?page=2`` ... until a page has no items), or, with
    ``next_key``, each response names the next page's URL (a dotted path such as
    ``"links.next"``; the last page has none). ``items`` is the dotted path of the list of
    records in a response (``""`` when the response is the list itself).

    The cursor is the page and how many of its records were read (``{"page": 5, "seen": 3}``,
    or ``{"url": ..., "seen": 3}`` with ``next_key``): an API that appends records fills its
    last page first, so the next run re-reads that page and takes only the records after the
    ones it saw, then goes on to pages that appeared since. A page is known full when it holds
    ``page_size`` records; without ``page_size``, when the next page has records, which costs
    a second request per page.

    >>> HttpJson("http://127.0.0.1:8000/orders", items="data", page_size=100)  # doctest: +SKIP
    """

    url: str
    items: str = "items"
    page_param: str = "page"
    first_page: int = 1
    page_size: int | None = None
    page_size_param: str = "page_size"
    next_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0

    def read(self, cursor: Any, batch_size: int) -> Batch:
        if self.next_key is not None:
            return self._read_linked(cursor)
        return self._read_numbered(cursor)

    def _read_numbered(self, cursor: Any) -> Batch:
        # A bare number is a page none of which was read (how a caller names a start page).
        if isinstance(cursor, dict):
            page, seen = int(cursor["page"]), int(cursor["seen"])
        else:
            page, seen = (self.first_page if cursor is None else int(cursor)), 0
        records, _ = self._page(self._numbered_url(page))
        rows = records[seen:]
        if self.page_size is not None:
            if len(records) >= self.page_size:
                return Batch(rows, {"page": page + 1, "seen": 0}, False)
            if not rows:
                return Batch([], cursor, True)  # nothing new: the cursor stays where it was
            # The last page so far: the cursor stays on it, as it may still grow.
            return Batch(rows, {"page": page, "seen": len(records)}, True)
        # Without page_size, whether a page is full shows only by the next one having records.
        following = self._page(self._numbered_url(page + 1))[0] if records else []
        if following:
            if rows:
                return Batch(rows, {"page": page + 1, "seen": 0}, False)
            return Batch(following, {"page": page + 1, "seen": len(following)}, False)
        if not rows:
            return Batch([], cursor, True)
        return Batch(rows, {"page": page, "seen": len(records)}, True)

    def _numbered_url(self, page: int) -> str:
        params = {self.page_param: str(page)}
        if self.page_size is not None:
            params[self.page_size_param] = str(self.page_size)
        return _with_params(self.url, params)

    def _read_linked(self, cursor: Any) -> Batch:
        if isinstance(cursor, dict):
            url, seen = str(cursor["url"]), int(cursor["seen"])
        else:
            url, seen = (self.url if cursor is None else str(cursor)), 0
        while True:
            records, body = self._page(url)
            rows = records[seen:]
            following = _dig(body, self.next_key or "") if isinstance(body, dict) else None
            if following:
                # A page with a next one is full: the cursor moves to the next page.
                after = urllib.parse.urljoin(url, str(following))
                if rows:
                    return Batch(rows, {"url": after, "seen": 0}, False)
                url, seen = after, 0
                continue
            if not rows:
                return Batch([], cursor, True)  # nothing new: the cursor stays where it was
            return Batch(rows, {"url": url, "seen": len(records)}, True)

    def _page(self, url: str) -> tuple[list[Row], Any]:
        body = self._get(url)
        records = _dig(body, self.items)
        if not isinstance(records, list):
            raise ApplicationError(f"{url} answered without a list at {self.items!r}: set "
                                   "items= to where the records are", non_retryable=True)
        return [dict(r) for r in records], body

    def _get(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                       **self.headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as err:
            raise ApplicationError(f"{url} answered HTTP {err.code} {err.reason}",
                                   type="SourceHttpError",
                                   non_retryable=400 <= err.code < 500 and err.code != 429
                                   ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApplicationError(f"cannot reach {url}: {reason}",
                                   type="SourceUnreachable") from None

    def describe(self) -> str:
        return self.url


def _with_params(url: str, params: Mapping[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _dig(body: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        body = body.get(part) if isinstance(body, dict) else None
    return body


# In memory --------------------------------------------------------------------------------------


@dataclass
class IterableSource(Source):
    """Rows from a Python iterable, or a function returning one (called again on each read,
    so a generator function works). The cursor is how many rows were read; each read iterates
    from the start, so the iterable must give the same rows in the same order every time."""

    rows: Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]]

    def read(self, cursor: Any, batch_size: int) -> Batch:
        start = int(cursor or 0)
        iterable = self.rows() if callable(self.rows) else self.rows
        chunk = [dict(r) for r in islice(iter(iterable), start, start + batch_size + 1)]
        more = len(chunk) > batch_size
        rows = chunk[:batch_size]
        return Batch(rows, start + len(rows), not more)


@dataclass
class DataFrameSource(Source):
    """The rows of a pandas DataFrame (the cursor is a row position)."""

    frame: Any

    def read(self, cursor: Any, batch_size: int) -> Batch:
        start = int(cursor or 0)
        part = self.frame.iloc[start:start + batch_size]
        rows = [{k: _native(v) for k, v in r.items()} for r in part.to_dict("records")]
        end = start + len(rows)
        return Batch(rows, end, end >= len(self.frame))


def _native(value: Any) -> Any:
    """numpy/pandas scalars as Python values; NaN and NaT as null."""
    if value is None:
        return None
    if value != value:  # NaN, NaT
        return None
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


__all__ = [
    "Batch",
    "DataFrameSource",
    "FileFolder",
    "HttpJson",
    "IterableSource",
    "RawCsv",
    "Source",
    "SqlQuery",
]
