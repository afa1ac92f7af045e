"""dbosify.pipelines' public names, pinned (a change here is a change of the public API)."""

from __future__ import annotations

import dbosify.pipelines

EXPORTS = [
    "ACTIVITIES", "Backfill", "BackfillProgress", "BackfillResult", "BackfillState", "Batch",
    "BatchRequest", "BatchResult", "BatchWrite", "CsvFiles", "DataFrameSink", "DataFrameSource",
    "FanOut", "FanOutState",
    "FileFolder", "HttpJson", "IncrementalIngest", "IngestResult", "IngestState",
    "IterableSource", "ParquetFiles", "PostgresTable", "Row", "Schema", "SchemaConflictError",
    "Sink", "Source", "SqlQuery", "SqliteTable", "Template", "WriteDisposition", "Written",
    "date_partitions", "id_ranges", "ingest_batch", "start_ingest",
]


def test_exports_are_pinned_and_present() -> None:
    assert sorted(dbosify.pipelines.__all__) == sorted(EXPORTS)
    for name in EXPORTS:
        assert getattr(dbosify.pipelines, name) is not None


def test_the_activities_are_the_ingest_activities() -> None:
    names = [fn.__temporal_activity_definition.name  # type: ignore[attr-defined]
             for fn in dbosify.pipelines.ACTIVITIES]
    assert names == ["dbosify.pipelines.start_ingest", "dbosify.pipelines.ingest_batch"]
