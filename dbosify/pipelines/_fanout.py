"""FanOut: one activity mapped over many items, with bounded concurrency."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from temporalio import workflow

from dbosify.pipelines._bounded import map_bounded
from dbosify.pipelines._template import Template, setting


class FanOut(Template):
    """Runs ``activity`` once per item, at most ``concurrency`` at a time, and returns the
    results in the items' order. Each item is its own activity, retried on its own by
    ``retry_policy``; a failure that outlasts its retries fails the run.

    >>> @activity.defn
    ... async def thumbnail(path: str) -> str: ...
    >>> class Thumbnails(FanOut):
    ...     activity = thumbnail
    ...     concurrency = 8
    >>> await client.execute_workflow(Thumbnails.run, paths, id="thumbs", task_queue="q")
    ... # doctest: +SKIP

    Register ``activity`` with the worker as usual.
    """

    _template_base = True
    activity: ClassVar[Callable[..., Any]]
    concurrency: ClassVar[int] = 10

    def __init__(self) -> None:
        self._total = 0
        self._done = 0

    if TYPE_CHECKING:
        # Made for each subclass when it is defined (see Template); declared for type checkers.
        async def run(self, items: list[Any]) -> list[Any]: ...

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

    async def _run_impl(self, items: list[Any]) -> list[Any]:
        cls = type(self)
        fn = setting(cls, "activity")
        self._total = len(items)
        self._show()

        async def call(_: int, item: Any) -> Any:
            result = await workflow.execute_activity(
                fn, item, start_to_close_timeout=cls.start_to_close_timeout,
                retry_policy=cls.retry_policy)
            self._done += 1
            self._show()
            return result

        return await map_bounded(items, cls.concurrency, call)

    def _show(self) -> None:
        workflow.set_current_details(f"{self._done}/{self._total} items done")

    @workflow.query
    def progress(self) -> dict[str, int]:
        """``{"done": ..., "total": ...}``."""
        return {"done": self._done, "total": self._total}
