"""IncrementalIngest on both backends: dispositions, schema growth, type conflicts, files that
arrive later, and a batch written twice (DESIGN §7)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from dbosify import pipelines
from dbosify.client import Client, WorkflowFailureError
from dbosify.exceptions import ApplicationError
from dbosify.worker import Worker

from .conftest import SinkKit, pipeline, run


async def test_append_continues_from_the_last_committed_cursor(
        client: Client, serve: Any, kit: SinkKit) -> None:
    table = kit.table("append")
    data = [{"id": i, "name": f"n{i}", "price": i * 1.5} for i in range(23)]
    Append = pipeline("Append", source=pipelines.IterableSource(lambda: list(data)),
                      sink=kit.sink(table), batch_size=5, batches_per_run=2)
    async with serve([Append]):
        first = await run(client, Append)
        assert (first.rows, first.batches, first.cursor) == (23, 5, 23)
        assert first.runs == 3  # continued as new twice: 2 + 2 + 1 batches
        data.extend({"id": i, "name": f"n{i}", "price": 0.5} for i in range(23, 30))
        second = await run(client, Append)
        third = await run(client, Append)
    assert (second.rows, second.cursor) == (7, 30)
    assert third.rows == 0
    assert kit.query(f'SELECT count(*), count(DISTINCT id), min(id), max(id) FROM "{table}"') \
        == [(30, 30, 0, 29)]


async def test_replace_keeps_only_the_last_runs_rows(client: Client, serve: Any,
                                                     kit: SinkKit) -> None:
    table = kit.table("replace")
    data = [{"id": i, "v": "old"} for i in range(12)]
    Replace = pipeline("Replace", source=pipelines.IterableSource(lambda: list(data)),
                       sink=kit.sink(table), write_disposition="replace", batch_size=5)
    async with serve([Replace]):
        await run(client, Replace)
        data[:] = [{"id": i, "v": "new"} for i in range(100, 107)]
        result = await run(client, Replace)
        assert result.rows == 7
        assert kit.query(f'SELECT count(*), min(id), max(v) FROM "{table}"') == [(7, 100, "new")]
        data.clear()
        await run(client, Replace)
    assert kit.query(f'SELECT count(*) FROM "{table}"') == [(0,)]


async def test_merge_upserts_by_primary_key(client: Client, serve: Any, kit: SinkKit) -> None:
    table = kit.table("merge")
    data = [{"id": i, "status": "new"} for i in range(8)]
    Merge = pipeline("Merge", source=pipelines.IterableSource(lambda: list(data)),
                     sink=kit.sink(table), write_disposition="merge", primary_key="id",
                     batch_size=3)
    async with serve([Merge]):
        await run(client, Merge)
        data[:] = [{"id": i, "status": "shipped"} for i in range(5, 11)]
        await run(client, Merge)
    rows = dict(kit.query(f'SELECT id, status FROM "{table}" ORDER BY id'))
    assert rows == {**{i: "new" for i in range(5)}, **{i: "shipped" for i in range(5, 11)}}


async def test_a_column_that_appears_mid_stream_is_added(client: Client, serve: Any,
                                                          kit: SinkKit) -> None:
    table = kit.table("grow")
    rows = [{"id": i, "a": i} for i in range(4)] + \
        [{"id": i, "a": i, "b": f"b{i}"} for i in range(4, 8)]
    Grow = pipeline("Grow", source=pipelines.IterableSource(rows), sink=kit.sink(table),
                    batch_size=4)
    async with serve([Grow]):
        await run(client, Grow)
    assert kit.columns(table) == ["id", "a", "b"]
    got = kit.query(f'SELECT id, b FROM "{table}" ORDER BY id')
    assert got == [(i, None) for i in range(4)] + [(i, f"b{i}") for i in range(4, 8)]


async def test_a_type_conflict_stops_the_run_writing_nothing(client: Client, serve: Any,
                                                              kit: SinkKit) -> None:
    table = kit.table("conflict")
    data: list[dict[str, Any]] = [{"id": i, "amount": i * 10} for i in range(3)]
    sink = kit.sink(table)
    Conflict = pipeline("Conflict", source=pipelines.IterableSource(lambda: list(data)),
                        sink=sink, batch_size=2)
    async with serve([Conflict]):
        await run(client, Conflict)
        before = sink.last_cursor("Conflict", "")
        data.extend([{"id": 3, "amount": 30}, {"id": 4, "amount": "a lot"}])
        with pytest.raises(WorkflowFailureError) as caught:
            await run(client, Conflict)
    cause = caught.value.cause.cause  # type: ignore[union-attr]
    assert isinstance(cause, ApplicationError) and cause.type == "SchemaConflict"
    assert "'amount'" in cause.message and "bigint" in cause.message and "text" in \
        cause.message
    # The conflicting batch (ids 3 and 4) wrote nothing, and the cursor stayed put.
    assert kit.query(f'SELECT count(*), max(id) FROM "{table}"') == [(3, 2)]
    assert sink.last_cursor("Conflict", "") == before == (True, 3)


async def test_a_file_that_arrives_after_the_first_run_is_picked_up(
        client: Client, serve: Any, kit: SinkKit, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()

    def drop(name: str, ids: range) -> None:
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "city", "amount"])
            for i in ids:
                writer.writerow([i, f"city, {i}", f"{i}.25"])

    drop("2024-01-01.csv", range(0, 7))
    drop("2024-01-02.csv", range(7, 10))
    table = kit.table("files")
    Files = pipeline("Files", source=pipelines.FileFolder(folder, "*.csv",
                                                          types={"id": int, "amount": float}),
                     sink=kit.sink(table), batch_size=4)
    async with serve([Files]):
        first = await run(client, Files)
        assert first.rows == 10
        drop("2024-01-03.csv", range(10, 15))
        second = await run(client, Files)
        assert second.rows == 5
        assert (await run(client, Files)).rows == 0
    assert kit.query(f'SELECT count(*), count(DISTINCT id), sum(amount) FROM "{table}"') == \
        [(15, 15, sum(i + 0.25 for i in range(15)))]
    assert kit.query(f'SELECT city FROM "{table}" WHERE id = 3') == [("city, 3",)]


async def test_a_batch_committed_twice_is_written_once(kit: SinkKit) -> None:
    """What a retry after a crash between commit and the activity's completion does."""
    table = kit.table("twice")
    sink = kit.sink(table)
    batch = pipelines.BatchWrite("Twice", "", None, 2, [{"id": 1}, {"id": 2}])
    assert sink.write(batch).already is False
    again = sink.write(pipelines.BatchWrite("Twice", "", None, 3,
                                            [{"id": 1}, {"id": 2}, {"id": 3}]))
    assert (again.already, again.cursor, again.rows) == (True, 2, 2)
    assert kit.query(f'SELECT count(*) FROM "{table}"') == [(2,)]


async def test_merge_into_a_table_without_a_key_is_a_clear_error(kit: SinkKit) -> None:
    table = kit.table("nokey")
    sink = kit.sink(table)
    sink.write(pipelines.BatchWrite("NoKey", "", None, 1, [{"id": 1, "v": "a"}]))
    with pytest.raises(ApplicationError, match="no primary key or unique constraint"):
        sink.write(pipelines.BatchWrite("NoKey", "", 1, 2, [{"id": 1, "v": "b"}],
                                        disposition="merge", primary_key=("id",)))
    assert kit.query(f'SELECT v FROM "{table}"') == [("a",)]


async def test_a_csv_bulk_load_and_its_type_conflict(client: Client, serve: Any,
                                                      kit: SinkKit, tmp_path: Path) -> None:
    """Unquoted CSV lines go to Postgres as they are (COPY); the rows are the ones a parsed
    read gives, and a bad value past the type sample stops the run without moving the cursor."""
    folder = tmp_path / "bulk"
    folder.mkdir()
    lines = ["id,amount,note"] + [f"{i},{i}.5,{'' if i % 2 else 'n' + str(i)}"
                                  for i in range(1500)]
    (folder / "a.csv").write_text("\n".join(lines) + "\n\n")  # a trailing blank line
    table = kit.table("bulk")
    sink = kit.sink(table)
    Bulk = pipeline("Bulk", source=pipelines.FileFolder(folder, "*.csv",
                                                        types={"id": int, "amount": float}),
                    sink=sink, batch_size=2000)
    async with serve([Bulk]):
        assert (await run(client, Bulk)).rows == 1500
        # The sample (the first 1000 rows) is clean; row 1100 of the next file is not.
        bad = ["id,amount,note"] + [f"{i},{'oops' if i == 2600 else str(i)},x"
                                    for i in range(1500, 3000)]
        (folder / "b.csv").write_text("\n".join(bad) + "\n")
        with pytest.raises(WorkflowFailureError) as caught:
            await run(client, Bulk)
    cause = caught.value.cause.cause  # type: ignore[union-attr]
    assert isinstance(cause, ApplicationError) and cause.type == "SchemaConflict"
    assert "oops" in cause.message
    assert kit.query(f'SELECT count(*), sum(amount), count(note) FROM "{table}"') == \
        [(1500, sum(i + 0.5 for i in range(1500)), 750)]
    found, cursor = sink.last_cursor("Bulk", "")
    assert found and cursor["key"] == ["a.csv"] and cursor["complete"]


async def test_a_column_null_at_first_takes_the_type_of_its_first_value(
        client: Client, serve: Any, kit: SinkKit) -> None:
    table = kit.table("late")
    rows: list[dict[str, Any]] = [{"id": 0, "score": None}, {"id": 1, "score": None},
                                  {"id": 2, "score": 7}, {"id": 3, "score": None}]
    rows += [{"id": 4, "score": 9, "extra": None}]
    Late = pipeline("Late", source=pipelines.IterableSource(rows), sink=kit.sink(table),
                    batch_size=2)
    async with serve([Late]):
        assert (await run(client, Late)).rows == 5
    assert kit.columns(table) == ["id", "score"]
    assert kit.query(f'SELECT id, score FROM "{table}" ORDER BY id') == \
        [(0, None), (1, None), (2, 7), (3, None), (4, 9)]


class _LosesItsAnswer(pipelines.Sink):
    """Commits through ``inner``, then fails the first time for batch ``at``: the retry finds
    the batch committed (as after a worker that died between commit and completion)."""

    def __init__(self, inner: pipelines.Sink, at: int) -> None:
        self.inner, self.at, self.writes, self.failed = inner, at, 0, False

    def write(self, batch: pipelines.BatchWrite) -> pipelines.Written:
        written = self.inner.write(batch)
        self.writes += 1
        if self.writes == self.at and not self.failed:
            self.failed = True
            raise ApplicationError("the answer was lost", type="Lost")
        return written

    def last_cursor(self, pipeline: str, load_id: str) -> tuple[bool, Any]:
        return self.inner.last_cursor(pipeline, load_id)


@pytest.mark.parametrize("disposition", ["append", "replace", "merge"])
async def test_a_batch_retried_after_its_commit_writes_nothing(
        client: Client, serve: Any, kit: SinkKit, disposition: str) -> None:
    from datetime import timedelta

    from dbosify.common import RetryPolicy

    table = kit.table(f"retried_{disposition}")
    sink = _LosesItsAnswer(kit.sink(table), at=2)
    Retried = pipeline("Retried", source=pipelines.IterableSource(
        [{"id": i, "v": i} for i in range(10)]), sink=sink, batch_size=3,
        write_disposition=disposition, primary_key=("id",),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=10)))
    async with serve([Retried]):
        result = await run(client, Retried)
    assert sink.failed and result.skipped == 1
    assert result.rows == 10
    assert kit.query(f'SELECT count(*), count(DISTINCT id) FROM "{table}"') == [(10, 10)]


class _Stuck(pipelines.Source):
    """A source whose cursor never moves past "end" and which never says it is done."""

    def read(self, cursor: Any, batch_size: int) -> pipelines.Batch:
        return pipelines.Batch([{"id": 1}], "end", False)


async def test_a_batch_recorded_as_moving_nothing_ends_the_run(client: Client, serve: Any,
                                                               kit: SinkKit) -> None:
    import asyncio

    table = kit.table("stuck")
    Stuck = pipeline("Stuck", source=_Stuck(), sink=kit.sink(table), batches_per_run=50)
    async with serve([Stuck]):
        result = await asyncio.wait_for(run(client, Stuck), 60)
    # From the start to "end", then "end" to "end" once; the third batch finds that one
    # recorded (counting its row again, writing nothing) and stops there.
    assert (result.batches, result.skipped, result.cursor) == (3, 1, "end")
    assert kit.query(f'SELECT count(*) FROM "{table}"') == [(2,)]


async def test_a_worker_serves_the_templates_activities_unasked(client: Client,
                                                                kit: SinkKit) -> None:
    # Only the subclass is given: its batch activities (in dbosify) come with it.
    table = kit.table("unasked")
    Unasked = pipeline("Unasked", source=pipelines.IterableSource([{"id": i} for i in range(7)]),
                       sink=kit.sink(table), batch_size=3)
    async with Worker(client, task_queue="q", workflows=[Unasked]):
        result = await run(client, Unasked)
    assert (result.rows, result.batches) == (7, 3)
    assert kit.query(f'SELECT count(*) FROM "{table}"') == [(7,)]
