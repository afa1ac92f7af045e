"""Paginated HTTP API -> Postgres, merged by primary key.

The example serves its own API on 127.0.0.1 (a product catalogue, ``/products?page=N``, 20
products per page), so it runs offline::

    python pipelines/http_to_postgres/pipeline.py [--postgres URL] [--table NAME]

``--postgres`` is where both dbosify and the table live (default
``postgresql://postgres@127.0.0.1:5432/postgres``). The first run loads the catalogue; then
prices change and products are added on the API, and the second run upserts: changed rows are
updated, new ones inserted, none duplicated. It prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg

from dbosify import pipelines
from dbosify.client import Client
from dbosify.worker import Worker

PAGE_SIZE = 20
CATALOGUE: list[dict[str, Any]] = [
    {"sku": f"SKU-{n:04d}", "name": f"Product {n}", "price": round(5 + n * 0.75, 2),
     "in_stock": n % 3 != 0} for n in range(1, 54)]


class CatalogueApi(BaseHTTPRequestHandler):
    """``GET /products?page=N``: ``{"products": [...], "page": N}``; an empty page ends it."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/products":
            self.send_error(404)
            return
        page = int(parse_qs(parts.query).get("page", ["1"])[0])
        body = json.dumps({"page": page, "products":
                           CATALOGUE[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving() -> Iterator[str]:
    """The API on a free port of 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), CatalogueApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_products(base_url: str, postgres: str, table: str) -> type[pipelines.IncrementalIngest]:
    class Products(pipelines.IncrementalIngest):
        source = pipelines.HttpJson(f"{base_url}/products", items="products")
        sink = pipelines.PostgresTable(postgres, table)
        write_disposition = "merge"  # re-reads the API each run, upserting by sku
        primary_key = ("sku",)

    return Products


async def run(postgres: str, table: str) -> dict[str, Any]:
    with serving() as base_url:
        products = make_products(base_url, postgres, table)
        client = await Client.connect(postgres)
        async with Worker(client, task_queue="http-to-postgres", workflows=[products],
                          activities=pipelines.ACTIVITIES):
            first = await client.execute_workflow(products.run,
                                                  id=f"products-{uuid.uuid4()}",
                                                  task_queue="http-to-postgres")
            # The catalogue changes: a price cut, and five new products.
            CATALOGUE[0]["price"] = 1.99
            CATALOGUE.extend({"sku": f"SKU-{n:04d}", "name": f"Product {n}", "price": 9.5,
                              "in_stock": True} for n in range(54, 59))
            second = await client.execute_workflow(products.run,
                                                   id=f"products-{uuid.uuid4()}",
                                                   task_queue="http-to-postgres")
    with psycopg.connect(postgres) as conn:
        rows, skus = conn.execute(f'SELECT count(*), count(DISTINCT sku) FROM "{table}"'
                                  ).fetchone() or (0, 0)
        price = conn.execute(f"SELECT price FROM \"{table}\" WHERE sku = 'SKU-0001'"
                             ).fetchone()
    return {"first_run": {"rows": first.rows, "pages": first.batches},
            "second_run": {"rows": second.rows, "pages": second.batches},
            "table": table, "rows": rows, "distinct_skus": skus,
            "sku_0001_price": price[0] if price else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--table", default="products")
    args = parser.parse_args(argv)
    with psycopg.connect(args.postgres) as conn:  # a fresh table: the example starts over
        conn.execute(f'DROP TABLE IF EXISTS "{args.table}"')
    print(json.dumps(asyncio.run(run(args.postgres, args.table))))


if __name__ == "__main__":
    main()
