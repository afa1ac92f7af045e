"""FanOut: one activity mapped over many items, with bounded concurrency."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from temporalio import workflow

from dbosify.pipelines._bounded import map_bounded
from dbosify.pipelines._template import Template, setting


@dataclass
class FanOutState:
    """What a fan-out carries into its next run when it continues as new: the results of the
    items before the ones it is given, in order (no item is in flight then)."""

    total: int
    results: list[Any] = field(default_factory=list)
    runs: int = 1


class FanOut(Template):
    """Runs ``activity`` once per item, at most ``concurrency`` at a time, and returns the
    results in the items' order. Each item is its own activity, retried on its own by
    ``retry_policy``; a failure that outlasts its retries fails the run.

    A long fan-out continues as new after every ``items_per_run`` items, so each run's
    history stays bounded: the run lets its items in flight finish, then continues with the
    items left and the results so far; the last run returns every result, in order.

    >>> @activity.defn
    ... async def thumbnail(path: str) -> str: ...
    >>> class Thumbnails(FanOut):
    ...     activity = thumbnail
    ...     concurrency = 8
    >>> await client.execute_workflow(Thumbnails.run, paths, id="thumbs", task_queue="q")
    ... # doctest: +SKIP

    Register ``activity`` with the worker as usual (``dbosify worker`` does it for you).
    """

    _template_base = True
    activity: ClassVar[Callable[..., Any]]
    concurrency: ClassVar[int] = 10
    items_per_run: ClassVar[int] = 1000
    """Items one run processes before it continues as new (about six history events each)."""

    def __init__(self) -> None:
        self._state = FanOutState(total=0)
        self._done = 0

    if TYPE_CHECKING:
        # Made for each subclass when it is defined (see Template); declared for type checkers.
        async def run(self, items: list[Any], state: FanOutState | None = None) -> list[Any]:
            ...

    @classmethod
    def _check_settings(cls) -> None:
        try:
            fn = setting(cls, "activity")
        except AttributeError:
            raise TypeError(f"{cls.__name__} needs activity = <an @activity.defn function>"
                            ) from None
        if not hasattr(fn, "__temporal_activity_definition"):
            raise TypeError(f"{cls.__name__}.activity must be an @activity.defn function")
        if cls.concurrency < 1:
            raise TypeError(f"{cls.__name__}.concurrency must be >= 1")
        if cls.items_per_run < 1:
            raise TypeError(f"{cls.__name__}.items_per_run must be >= 1")

    @classmethod
    def template_activities(cls) -> list[Callable[..., Any]]:
        return [setting(cls, "activity")]

    async def _run_impl(self, items: list[Any], state: FanOutState | None = None) -> list[Any]:
        cls = type(self)
        fn = setting(cls, "activity")
        self._state = state = state if state is not None else FanOutState(total=len(items))
        self._done = len(state.results)
        self._show()

        async def call(_: int, item: Any) -> Any:
            result = await workflow.execute_activity(
                fn, item, start_to_close_timeout=cls.start_to_close_timeout,
                retry_policy=cls.retry_policy)
            self._done += 1
            self._show()
            return result

        now, later = items[:cls.items_per_run], items[cls.items_per_run:]
        # Every item of this run finishes before it continues: none is in flight across the
        # hand-over, so none is lost or run twice, and the results stay in the items' order.
        state.results.extend(await map_bounded(now, cls.concurrency, call))
        if later:
            state.runs += 1
            workflow.continue_as_new(args=[later, state])
        return state.results

    def _show(self) -> None:
        text = f"{self._done}/{self._state.total} items done"
        if self._state.runs > 1:
            text += f" (run {self._state.runs})"
        workflow.set_current_details(text)

    @workflow.query
    def progress(self) -> dict[str, int]:
        """``{"done": ..., "total": ..., "runs": ...}`` over every run so far."""
        return {"done": self._done, "total": self._state.total, "runs": self._state.runs}
