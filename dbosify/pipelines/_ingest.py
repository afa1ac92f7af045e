"""IncrementalIngest: a source read from a cursor in batches, each batch committed to a sink."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from temporalio import activity, workflow

from dbosify.pipelines._sinks import BatchWrite, Sink, WriteDisposition
from dbosify.pipelines._sources import Source
from dbosify.pipelines._template import Template, lookup


@dataclass
class IngestState:
    """Where an ingest is (the workflow's durable state; carried over by continue-as-new)."""

    load_id: str
    """"" for an incremental pipeline (every run continues the last); else the first run's id."""
    cursor: Any = None
    rows: int = 0
    batches: int = 0
    skipped: int = 0
    """Batches found already committed (re-run after a crash): their rows were not rewritten."""
    runs: int = 1
    """How many runs (continued as new) this load took so far."""


@dataclass
class IngestResult:
    """What an ingest did."""

    rows: int
    batches: int
    cursor: Any
    runs: int
    skipped: int = 0


@dataclass
class BatchRequest:
    """One batch for the ``ingest_batch`` activity."""

    pipeline: str
    load_id: str
    cursor: Any
    first: bool


@dataclass
class BatchResult:
    rows: int
    cursor: Any
    done: bool
    already: bool = False


class IncrementalIngest(Template):
    """Reads ``source`` from a cursor in batches and writes each batch to ``sink``; the cursor
    moves (in the workflow's state) only after the sink committed the batch.

    Settings (class attributes):

    - ``source``: a :class:`Source` (``SqlQuery``, ``FileFolder``, ``HttpJson``,
      ``IterableSource``, ``DataFrameSource`` or your own);
    - ``sink``: a :class:`Sink` (``PostgresTable``, ``SqliteTable``, ``ParquetFiles``,
      ``CsvFiles``, ``DataFrameSink`` or your own);
    - ``write_disposition``: ``"append"`` (default), ``"replace"`` or ``"merge"``;
    - ``primary_key``: the merge key, e.g. ``("id",)``;
    - ``incremental``: whether a run continues from the last committed cursor (default: True
      for append, False for replace and merge, which re-read the source);
    - ``batch_size`` (rows per batch), ``batches_per_run`` (continue-as-new after this many,
      so histories stay bounded), ``start_to_close_timeout`` and ``retry_policy`` (per batch);
    - ``pipeline_name``: the name the sink records batches under (default: the workflow type).

    Each batch is one activity that reads and writes it, so rows never enter the workflow's
    history. The sink records the batch's cursor range with its rows in one transaction: a
    batch repeated after a crash writes nothing, so no row is lost or duplicated.

    Serve it with the pipeline activities::

        class Orders(IncrementalIngest):
            source = FileFolder("incoming", "*.csv")
            sink = SqliteTable("shop.db", "orders")

        Worker(client, task_queue="q", workflows=[Orders], activities=pipelines.ACTIVITIES)
        await client.execute_workflow(Orders.run, id="orders", task_queue="q")
    """

    _template_base = True
    source: ClassVar[Source]
    sink: ClassVar[Sink]
    write_disposition: ClassVar[WriteDisposition] = "append"
    primary_key: ClassVar[Sequence[str]] = ()
    incremental: ClassVar[bool | None] = None
    batch_size: ClassVar[int] = 10_000
    batches_per_run: ClassVar[int] = 200
    pipeline_name: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._state: IngestState | None = None

    if TYPE_CHECKING:
        # Made for each subclass when it is defined (see Template); declared for type checkers.
        async def run(self, state: IngestState | None = None) -> IngestResult: ...

    @classmethod
    def _check_settings(cls) -> None:
        for name, kind in (("source", Source), ("sink", Sink)):
            value = getattr(cls, name, None)
            if not isinstance(value, kind):
                raise TypeError(f"{cls.__name__}.{name} must be a {kind.__name__} (got "
                                f"{value!r:.80})")
        if cls.write_disposition not in ("append", "replace", "merge"):
            raise TypeError(f"{cls.__name__}.write_disposition must be 'append', 'replace' or "
                            f"'merge', not {cls.write_disposition!r}")
        if cls.write_disposition == "merge":
            if not cls.primary_key:
                raise TypeError(f"{cls.__name__} merges: set primary_key, e.g. ('id',)")
            if not cls.sink.supports_merge:
                raise TypeError(f"{cls.__name__}: {cls.sink.describe()} cannot merge; use a "
                                "table sink or write_disposition='append'")
        if isinstance(cls.primary_key, str):
            cls.primary_key = (cls.primary_key,)
        if cls.batch_size < 1 or cls.batches_per_run < 1:
            raise TypeError(f"{cls.__name__}: batch_size and batches_per_run must be >= 1")

    @classmethod
    def template_activities(cls) -> list[Callable[..., Any]]:
        return [start_ingest, ingest_batch]

    @classmethod
    def is_incremental(cls) -> bool:
        if cls.incremental is not None:
            return cls.incremental
        return cls.write_disposition == "append"

    @classmethod
    def name_in_sink(cls) -> str:
        return cls.pipeline_name or cls._workflow_name

    async def _run_impl(self, state: IngestState | None = None) -> IngestResult:
        cls = type(self)
        options: dict[str, Any] = {"start_to_close_timeout": cls.start_to_close_timeout,
                                   "retry_policy": cls.retry_policy}
        if state is None:
            load_id = "" if cls.is_incremental() else workflow.info().run_id
            cursor = await workflow.execute_activity(start_ingest, args=[cls._workflow_name,
                                                                         load_id], **options)
            state = IngestState(load_id=load_id, cursor=cursor)
        self._state = state
        this_run = 0
        while True:
            self._show()
            batch = await workflow.execute_activity(
                ingest_batch, BatchRequest(cls._workflow_name, state.load_id, state.cursor,
                                           first=state.batches == 0), **options)
            # The batch is committed: only now does the cursor move.
            state.cursor = batch.cursor
            state.rows += batch.rows
            state.batches += 1
            state.skipped += int(batch.already)
            this_run += 1
            self.on_batch_committed(state)
            if batch.done:
                self._show()
                return IngestResult(state.rows, state.batches, state.cursor, state.runs,
                                    state.skipped)
            if this_run >= cls.batches_per_run:
                state.runs += 1
                workflow.continue_as_new(state)

    def _show(self) -> None:
        state = self._state
        if state is not None:
            workflow.set_current_details(
                f"{state.rows} rows in {state.batches} batches; cursor "
                f"{json.dumps(state.cursor, default=str)[:120]}")

    def on_batch_committed(self, state: IngestState) -> None:
        """Called in the workflow after each committed batch (workflow code: deterministic,
        no I/O). Override it to log progress with ``workflow.logger``."""

    @workflow.query
    def progress(self) -> IngestState | None:
        """Rows and batches committed so far, and the cursor."""
        return self._state


@activity.defn(name="dbosify.pipelines.start_ingest")
async def start_ingest(pipeline: str, load_id: str) -> Any:
    """The cursor a new load starts from: after the sink's last committed batch for an
    incremental pipeline, else None (the beginning)."""
    cls = lookup(pipeline)
    assert issubclass(cls, IncrementalIngest)
    if load_id:
        return None
    _, cursor = await asyncio.to_thread(cls.sink.last_cursor, cls.name_in_sink(), load_id)
    return cursor


@activity.defn(name="dbosify.pipelines.ingest_batch")
async def ingest_batch(request: BatchRequest) -> BatchResult:
    """Reads one batch from the pipeline's source and commits it to its sink (idempotently)."""
    cls = lookup(request.pipeline)
    assert issubclass(cls, IncrementalIngest)
    return await asyncio.to_thread(_ingest_batch, cls, request)


def _ingest_batch(cls: type[IncrementalIngest], request: BatchRequest) -> BatchResult:
    batch = cls.source.read(request.cursor, cls.batch_size)
    emptying = request.first and cls.write_disposition == "replace"
    if batch.count == 0 and batch.cursor == request.cursor and not emptying:
        # Nothing new: recording it would make the next run skip rows that arrive later.
        return BatchResult(0, request.cursor, True)
    # CSV lines as the file holds them go to a sink that bulk-loads them as they are.
    raw = batch.raw if cls.sink.accepts_raw_csv and cls.write_disposition != "merge" else None
    written = cls.sink.write(BatchWrite(
        pipeline=cls.name_in_sink(), load_id=request.load_id, cursor_from=request.cursor,
        cursor_to=batch.cursor, rows=[] if raw is not None else batch.rows,
        disposition=cls.write_disposition, primary_key=tuple(cls.primary_key),
        first=request.first, raw=raw))
    if written.already:
        # Committed by an earlier attempt: its end cursor is the truth (the source may have
        # grown since, and those rows belong to the next batch). One that ended where it
        # began moved nothing: reading on from there would repeat it forever.
        done = (written.cursor == batch.cursor and batch.done) or written.cursor == request.cursor
        return BatchResult(written.rows, written.cursor, done, already=True)
    return BatchResult(written.rows, batch.cursor, batch.done)
