"""Pipelines: ingestion templates on dbosify's workflows (dlt's vocabulary: source, sink,
cursor, write disposition, primary key).

Templates are ordinary workflows you subclass with settings as class attributes:

- :class:`IncrementalIngest`: a source read from a cursor in batches into a sink; append,
  replace or merge; crash-safe (no row lost or duplicated); continues as new when long.
- :class:`Backfill`: an activity per partition (dates, id ranges) with bounded concurrency;
  continues as new when long, carrying what is done.
- :class:`FanOut`: an activity mapped over many items with bounded concurrency; continues as
  new when long, carrying the results in order.

Serve them with ``activities=dbosify.pipelines.ACTIVITIES`` (plus your own activities);
``dbosify worker MODULE`` adds every activity a module's pipelines call by itself.
Importing this package loads neither pandas nor pyarrow: they are imported when a DataFrame or
Parquet source or sink is used (``pip install dbosify[pipelines]`` installs pyarrow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbosify.pipelines._backfill import (
    Backfill,
    BackfillProgress,
    BackfillResult,
    BackfillState,
    date_partitions,
    id_ranges,
)
from dbosify.pipelines._fanout import FanOut, FanOutState
from dbosify.pipelines._ingest import (
    BatchRequest,
    BatchResult,
    IncrementalIngest,
    IngestResult,
    IngestState,
    ingest_batch,
    start_ingest,
)
from dbosify.pipelines._schema import Row, Schema, SchemaConflictError
from dbosify.pipelines._sinks import (
    BatchWrite,
    CsvFiles,
    DataFrameSink,
    ParquetFiles,
    PostgresTable,
    Sink,
    SqliteTable,
    WriteDisposition,
    Written,
)
from dbosify.pipelines._sources import (
    Batch,
    DataFrameSource,
    FileFolder,
    HttpJson,
    IterableSource,
    Source,
    SqlQuery,
)
from dbosify.pipelines._template import Template

ACTIVITIES: list[Callable[..., Any]] = [start_ingest, ingest_batch]
"""The activities IncrementalIngest runs: give them to the worker that serves its workflows."""

__all__ = [
    "ACTIVITIES",
    "Backfill",
    "BackfillProgress",
    "BackfillResult",
    "BackfillState",
    "Batch",
    "BatchRequest",
    "BatchResult",
    "BatchWrite",
    "CsvFiles",
    "DataFrameSink",
    "DataFrameSource",
    "FanOut",
    "FanOutState",
    "FileFolder",
    "HttpJson",
    "IncrementalIngest",
    "IngestResult",
    "IngestState",
    "IterableSource",
    "ParquetFiles",
    "PostgresTable",
    "Row",
    "Schema",
    "SchemaConflictError",
    "Sink",
    "Source",
    "SqlQuery",
    "SqliteTable",
    "Template",
    "WriteDisposition",
    "Written",
    "date_partitions",
    "id_ranges",
    "ingest_batch",
    "start_ingest",
]
