"""Sources and sinks: HTTP pagination against a local server, SQL queries, JSON-lines and
Parquet folders, DataFrames; and what ``import dbosify.pipelines`` loads."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dbosify import pipelines
from dbosify.client import Client
from dbosify.exceptions import ApplicationError

from .conftest import SinkKit, pipeline, run

RECORDS = [{"id": i, "name": f"item {i}", "tags": [i % 3]} for i in range(1, 24)]


class _Api(BaseHTTPRequestHandler):
    """Pages of the server's ``records`` (RECORDS at first): ``/numbered?page=N&page_size=S``
    (10 a page by default) and ``/linked?after=ID`` (which names the next page in
    ``links.next``). Requests are logged on the server."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append(self.path)
        records = self.server.records
        if parts.path == "/numbered":
            size = int(query.get("page_size", 10))
            page = int(query["page"])
            body: Any = {"data": records[(page - 1) * size: page * size]}
        elif parts.path == "/linked":
            after = int(query.get("after", 0))
            chunk = [r for r in records if r["id"] > after][:10]
            more = chunk and chunk[-1]["id"] < records[-1]["id"]
            body = {"items": chunk,
                    "links": {"next": f"/linked?after={chunk[-1]['id']}" if more else None}}
        else:
            self.send_error(404)
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.requests = []
    server.records = list(RECORDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _base(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


async def test_http_pages_by_number_and_by_link(client: Client, serve: Any, kit: SinkKit,
                                                api: ThreadingHTTPServer) -> None:
    numbered_table, linked_table = kit.table("numbered"), kit.table("linked")
    Numbered = pipeline("Numbered", sink=kit.sink(numbered_table),
                        source=pipelines.HttpJson(f"{_base(api)}/numbered", items="data",
                                                  page_size=5),
                        write_disposition="merge", primary_key=("id",))
    Linked = pipeline("Linked", sink=kit.sink(linked_table),
                      source=pipelines.HttpJson(f"{_base(api)}/linked", next_key="links.next"))
    async with serve([Numbered, Linked]):
        numbered = await run(client, Numbered)
        linked = await run(client, Linked)
    # 23 records in pages of 5: five pages, the last one short (so no sixth request).
    assert (numbered.rows, numbered.batches) == (23, 5)
    pages = [p for p in api.requests if p.startswith("/numbered")]
    assert [parse_qs(urlsplit(p).query)["page"][0] for p in pages] == ["1", "2", "3", "4", "5"]
    assert (linked.rows, linked.batches) == (23, 3)
    for table in (numbered_table, linked_table):
        assert kit.query(f'SELECT count(*), count(DISTINCT id) FROM "{table}"') == [(23, 23)]
    tags = kit.query(f'SELECT tags FROM "{linked_table}" WHERE id = 5')[0][0]
    assert (json.loads(tags) if isinstance(tags, str) else tags) == [2]


async def test_http_append_takes_records_added_to_the_last_page_later(
        client: Client, serve: Any, kit: SinkKit, api: ThreadingHTTPServer) -> None:
    tables = {name: kit.table(name) for name in ("sized", "unsized", "linked")}
    sources = {"sized": pipelines.HttpJson(f"{_base(api)}/numbered", items="data", page_size=5),
               "unsized": pipelines.HttpJson(f"{_base(api)}/numbered", items="data"),
               "linked": pipelines.HttpJson(f"{_base(api)}/linked", next_key="links.next")}
    appends = {name: pipeline(f"Append{name.title()}", source=sources[name],
                              sink=kit.sink(tables[name])) for name in tables}

    def add(count: int) -> None:
        last = api.records[-1]["id"]
        api.records.extend({"id": i, "name": f"item {i}", "tags": [i % 3]}
                           for i in range(last + 1, last + 1 + count))

    rows: dict[str, list[int]] = {name: [] for name in tables}
    async with serve(list(appends.values())):
        # 23 records, then 4 (filling the last page of 5, and one more page), none, then 14
        # (past a page of 10: the last page fills and two more appear).
        for added in (0, 4, 0, 14):
            add(added)
            for name, cls in appends.items():
                rows[name].append((await run(client, cls)).rows)
    for name, table in tables.items():
        assert rows[name] == [23, 4, 0, 14], name
        assert kit.query(f'SELECT count(*), count(DISTINCT id), max(id) FROM "{table}"') == \
            [(41, 41, 41)], name


def test_http_cursor_is_the_page_and_the_records_seen_on_it(api: ThreadingHTTPServer) -> None:
    source = pipelines.HttpJson(f"{_base(api)}/numbered", items="data", page_size=10)
    batches = []
    cursor = None
    while True:
        batch = source.read(cursor, 10)
        batches.append((len(batch.rows), batch.cursor, batch.done))
        cursor = batch.cursor
        if batch.done:
            break
    assert batches == [(10, {"page": 2, "seen": 0}, False), (10, {"page": 3, "seen": 0}, False),
                       (3, {"page": 3, "seen": 3}, True)]
    # Nothing new: the cursor stays as given (so the ingest records no batch).
    again = source.read(cursor, 10)
    assert (again.rows, again.cursor, again.done) == ([], cursor, True)
    api.records.append({"id": 24, "name": "item 24", "tags": [0]})
    grown = source.read(cursor, 10)
    assert ([r["id"] for r in grown.rows], grown.cursor, grown.done) == \
        ([24], {"page": 3, "seen": 4}, True)


def test_an_unreachable_api_is_a_clear_retryable_error() -> None:
    source = pipelines.HttpJson("http://127.0.0.1:9/nothing", timeout=2)
    with pytest.raises(ApplicationError, match=r"cannot reach http://127\.0\.0\.1:9/nothing") as err:
        source.read(None, 10)
    assert err.value.type == "SourceUnreachable" and not err.value.non_retryable


async def test_sql_query_source_reads_past_its_cursor(client: Client, serve: Any,
                                                      kit: SinkKit, tmp_path: Path) -> None:
    origin = tmp_path / "origin.sqlite"
    conn = sqlite3.connect(origin)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL, note TEXT)")
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                     [(i, i * 2.5, None if i % 2 else "gift") for i in range(1, 18)])
    conn.commit()
    table = kit.table("orders")
    Orders = pipeline("Orders", sink=kit.sink(table), batch_size=5,
                      source=pipelines.SqlQuery(f"sqlite:///{origin}",
                                                "SELECT id, total, note FROM orders", "id"))
    async with serve([Orders]):
        assert (await run(client, Orders)).rows == 17
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(18, 1.0, "x"), (19, 2.0, "y")])
        conn.commit()
        assert (await run(client, Orders)).rows == 2
    conn.close()
    assert kit.query(f'SELECT count(*), sum(total) FROM "{table}"') == \
        [(19, sum(i * 2.5 for i in range(1, 18)) + 3.0)]


async def test_jsonl_by_mtime_into_parquet_files(client: Client, serve: Any,
                                                 tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    folder, out = tmp_path / "events", tmp_path / "parquet"
    folder.mkdir()
    # Named against their arrival order: ordering by modification time reads b first.
    (folder / "b.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    (folder / "a.jsonl").write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3, 5)))
    import os
    os.utime(folder / "b.jsonl", (1_000_000, 1_000_000))
    os.utime(folder / "a.jsonl", (2_000_000, 2_000_000))
    Events = pipeline("Events", source=pipelines.FileFolder(folder, "*.jsonl", order="mtime"),
                      sink=pipelines.ParquetFiles(out), batch_size=2)
    async with serve([Events]):
        result = await run(client, Events)
    assert result.rows == 5
    files = sorted(out.glob("*.parquet"))
    assert [n for f in files for n in pq.read_table(f).column("n").to_pylist()] == \
        [0, 1, 2, 3, 4]


async def test_parquet_folder_into_a_dataframe_and_back(client: Client, serve: Any,
                                                        tmp_path: Path) -> None:
    import pandas
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3], "v": [0.5, None, 2.5]}), folder / "1.parquet")
    frames = pipelines.DataFrameSink("test")
    FromParquet = pipeline("FromParquet", source=pipelines.FileFolder(folder, "*.parquet"),
                           sink=frames, batch_size=2)
    csv_out = tmp_path / "csv"
    FromFrame = pipeline("FromFrame", sink=pipelines.CsvFiles(csv_out), batch_size=2,
                         source=pipelines.DataFrameSource(
                             pandas.DataFrame({"k": ["a", "b", "c"], "x": [1, 2, 3]})))
    async with serve([FromParquet, FromFrame]):
        await run(client, FromParquet)
        await run(client, FromFrame)
    frame = frames.frame
    assert list(frame.columns) == ["id", "v"] and frame["id"].tolist() == [1, 2, 3]
    assert [r["v"] for r in frames.rows] == [0.5, None, 2.5]
    lines = [f.read_text().splitlines() for f in sorted(csv_out.glob("*.csv"))]
    assert lines == [["k,x", "a,1", "b,2"], ["k,x", "c,3"]]


def test_import_loads_neither_pandas_nor_pyarrow() -> None:
    code = ("import sys, dbosify.pipelines; "
            "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_bad_settings_are_refused_when_the_class_is_defined(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"NoSink\.sink must be a Sink"):
        pipeline("NoSink", source=pipelines.IterableSource([]))
    with pytest.raises(TypeError, match="set primary_key"):
        pipeline("NoKey", source=pipelines.IterableSource([]), write_disposition="merge",
                 sink=pipelines.SqliteTable(tmp_path / "x.db", "t"))
    with pytest.raises(TypeError, match="cannot merge"):
        pipeline("FileMerge", source=pipelines.IterableSource([]), write_disposition="merge",
                 primary_key="id", sink=pipelines.CsvFiles(tmp_path))


async def test_a_timestamp_cursor_and_database_types(client: Client, serve: Any,
                                                     kit: SinkKit, tmp_path: Path) -> None:
    """A query on the backend's own database: timestamps as the cursor, UUIDs and numerics
    as values (they reach the sink as text and double)."""
    import datetime
    import uuid as uuidlib

    source_table = kit.table("events")
    start = datetime.datetime(2024, 5, 1, 12, 0, 0)
    events = [(start + datetime.timedelta(minutes=i), uuidlib.UUID(int=i), i * 1.25)
              for i in range(7)]
    if kit.postgres:
        import psycopg

        url = kit.database

        def add(rows: list[tuple[Any, ...]]) -> None:
            with psycopg.connect(url) as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {source_table} (ts timestamp, "
                             "ref uuid, amount numeric)")
                conn.cursor().executemany(f"INSERT INTO {source_table} VALUES (%s, %s, %s)",
                                          rows)
    else:
        path = tmp_path / "events.sqlite"
        url = f"sqlite:///{path}"

        def add(rows: list[tuple[Any, ...]]) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(f"CREATE TABLE IF NOT EXISTS {source_table} (ts TEXT, ref TEXT, "
                             "amount REAL)")
                conn.executemany(f"INSERT INTO {source_table} VALUES (?, ?, ?)",
                                 [(t.isoformat(sep=" "), str(r), a) for t, r, a in rows])

    add(events[:5])
    table = kit.table("events_copy")
    Events = pipeline("TimedEvents", sink=kit.sink(table), batch_size=2,
                      source=pipelines.SqlQuery(url, f"SELECT * FROM {source_table}", "ts"))
    async with serve([Events]):
        assert (await run(client, Events)).rows == 5
        add(events[5:])
        second = await run(client, Events)
    assert second.rows == 2
    got = kit.query(f'SELECT ref, amount FROM "{table}" ORDER BY amount')
    assert [(str(r), float(a)) for r, a in got] == [(str(r), a) for _, r, a in events]
