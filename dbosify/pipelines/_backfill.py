"""Backfill: a range of partitions (dates, id ranges) processed with bounded concurrency."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from dbosify.pipelines._bounded import map_bounded
from dbosify.pipelines._template import Template, setting


@dataclass
class BackfillProgress:
    """How far a backfill is (its ``progress`` query; also its current details)."""

    total: int = 0
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)
    runs: int = 1
    """How many runs (continued as new) the backfill took so far."""


@dataclass
class BackfillResult:
    """Each partition's result, by partition (as text)."""

    results: dict[str, Any]
    failed: dict[str, str]


@dataclass
class BackfillState:
    """What a backfill carries into its next run when it continues as new: the partitions
    finished so far (no partition is in flight then)."""

    total: int
    results: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    runs: int = 1


class Backfill(Template):
    """Runs ``activity`` once per partition, at most ``concurrency`` at a time. Each partition
    is its own activity, retried on its own by ``retry_policy``: a failing partition neither
    stops nor repeats the others. Progress shows in ``describe()`` (current details), the
    ``progress`` query, the history (one activity per partition) and the notebook's
    ``ProgressBar``.

    A partition that still fails after its retries is reported: the run ends with an
    ``ApplicationError`` (type ``BackfillFailed``) naming every failed partition, after all
    others finished; with ``fail_run = False`` it returns them in ``BackfillResult.failed``.

    A long backfill continues as new after every ``partitions_per_run`` partitions, so each
    run's history stays bounded: the run lets its partitions in flight finish, then continues
    with the partitions left and the results so far (nothing is lost or run twice).

    >>> class DailyTotals(Backfill):
    ...     activity = total_for_day        # @activity.defn async def ...(day: str)
    ...     concurrency = 4
    >>> await client.execute_workflow(DailyTotals.run, date_partitions("2024-01-01",
    ...     "2024-01-31"), id="totals-jan", task_queue="q")   # doctest: +SKIP
    """

    _template_base = True
    activity: ClassVar[Callable[..., Any]]
    concurrency: ClassVar[int] = 4
    fail_run: ClassVar[bool] = True
    partitions_per_run: ClassVar[int] = 1000
    """Partitions one run processes before it continues as new (about six history events
    each)."""

    def __init__(self) -> None:
        self._progress = BackfillProgress()

    if TYPE_CHECKING:
        # Made for each subclass when it is defined (see Template); declared for type checkers.
        async def run(self, partitions: list[Any],
                      state: BackfillState | None = None) -> BackfillResult: ...

    @classmethod
    def _check_settings(cls) -> None:
        try:
            fn = setting(cls, "activity")
        except AttributeError:
            raise TypeError(f"{cls.__name__} needs activity = <an @activity.defn function "
                            "taking one partition>") from None
        if not hasattr(fn, "__temporal_activity_definition"):
            raise TypeError(f"{cls.__name__}.activity must be an @activity.defn function")
        if cls.concurrency < 1:
            raise TypeError(f"{cls.__name__}.concurrency must be >= 1")
        if cls.partitions_per_run < 1:
            raise TypeError(f"{cls.__name__}.partitions_per_run must be >= 1")

    @classmethod
    def template_activities(cls) -> list[Callable[..., Any]]:
        return [setting(cls, "activity")]

    async def _run_impl(self, partitions: list[Any],
                        state: BackfillState | None = None) -> BackfillResult:
        cls = type(self)
        fn = setting(cls, "activity")
        if state is None:
            state = BackfillState(total=len(partitions))
        results = state.results
        progress = self._progress
        progress.total, progress.runs = state.total, state.runs
        progress.done, progress.failed = list(results), state.failed
        self._show()

        async def call(_: int, partition: Any) -> None:
            label = str(partition)
            progress.running.append(label)
            self._show()
            try:
                results[label] = await workflow.execute_activity(
                    fn, partition, start_to_close_timeout=cls.start_to_close_timeout,
                    retry_policy=cls.retry_policy, summary=f"partition {label}")
                progress.done.append(label)
            except ActivityError as err:
                progress.failed[label] = str(err.cause or err)
            finally:
                progress.running.remove(label)
                self._show()

        now, later = partitions[:cls.partitions_per_run], partitions[cls.partitions_per_run:]
        # Every partition of this run finishes before it continues: none is in flight across
        # the hand-over, so none is lost or started twice.
        await map_bounded(now, cls.concurrency, call)
        if later:
            state.runs += 1
            workflow.continue_as_new(args=[later, state])
        if progress.failed and cls.fail_run:
            names = ", ".join(progress.failed)
            raise ApplicationError(
                f"{len(progress.failed)} of {progress.total} partitions failed: {names}",
                {k: v for k, v in progress.failed.items()}, type="BackfillFailed",
                non_retryable=True)
        return BackfillResult(results, dict(progress.failed))

    def _show(self) -> None:
        p = self._progress
        text = f"{len(p.done)}/{p.total} partitions done"
        if p.failed:
            text += f", {len(p.failed)} failed ({', '.join(list(p.failed)[:5])})"
        if p.running:
            text += f"; running {', '.join(p.running[:5])}"
        if p.runs > 1:
            text += f" (run {p.runs})"
        workflow.set_current_details(text)

    @workflow.query
    def progress(self) -> BackfillProgress:
        """Partitions done, failed and running (over every run so far)."""
        return self._progress


def date_partitions(start: str | datetime.date, end: str | datetime.date,
                    step_days: int = 1) -> list[str]:
    """ISO dates from ``start`` to ``end`` inclusive, every ``step_days``.

    >>> date_partitions("2024-01-30", "2024-02-02")
    ['2024-01-30', '2024-01-31', '2024-02-01', '2024-02-02']
    """
    first = datetime.date.fromisoformat(str(start))
    last = datetime.date.fromisoformat(str(end))
    if step_days < 1:
        raise ValueError("step_days must be >= 1")
    days = (last - first).days
    return [(first + datetime.timedelta(days=d)).isoformat() for d in range(0, days + 1,
                                                                           step_days)]


def id_ranges(start: int, stop: int, size: int) -> list[list[int]]:
    """``[low, high)`` ranges of at most ``size`` ids covering ``start`` to ``stop``.

    >>> id_ranges(0, 25, 10)
    [[0, 10], [10, 20], [20, 25]]
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    return [[low, min(low + size, stop)] for low in range(start, stop, size)]
