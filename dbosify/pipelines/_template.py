"""Template: the base that turns a settings-only subclass into a registered workflow."""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RetryPolicy

_REGISTRY: dict[str, type[Template]] = {}
"""Workflow type name -> template subclass, filled as subclasses are defined, so the generic
activities find a pipeline's settings (its source and sink) by the name they are given."""


class Template:
    """Base of the pipeline templates. A subclass is a workflow of its own: defining it applies
    ``@workflow.defn`` (named after the class, or ``name=``) with a ``run`` method taken from the
    template, so a pipeline is settings only::

        class Orders(IncrementalIngest):
            source = SqlQuery(URL, "SELECT * FROM orders", cursor="id")
            sink = PostgresTable(URL, "orders_copy")

    Do not decorate it with ``@workflow.defn`` yourself. A subclass meant to be subclassed
    again passes ``abstract=True``: ``class Base(IncrementalIngest, abstract=True)``.
    """

    start_to_close_timeout: ClassVar[timedelta] = timedelta(minutes=10)
    """Each activity's start-to-close timeout (one batch, one partition, one item)."""
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
        maximum_attempts=5)
    """Each activity's retry policy."""

    _workflow_name: ClassVar[str] = ""

    def __init_subclass__(cls, *, abstract: bool = False, name: str | None = None,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract or cls.__dict__.get("_template_base", False):
            return
        impl = getattr(cls, "_run_impl", None)
        if impl is None:
            raise TypeError(f"{cls.__name__} derives from no pipeline template")
        cls._workflow_name = name or cls.__name__
        cls._check_settings()
        cls.run = _make_run(cls, impl)  # type: ignore[attr-defined]
        workflow.defn(name=cls._workflow_name)(cls)
        _REGISTRY[cls._workflow_name] = cls

    @classmethod
    def _check_settings(cls) -> None:
        """Raise a TypeError naming a missing or bad setting (at class definition)."""

    @classmethod
    def template_activities(cls) -> list[Callable[..., Any]]:
        """The activities this pipeline's runs call: a worker serving the workflow must serve
        them too (``dbosify worker`` adds them by itself)."""
        return []


def _make_run(cls: type, impl: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``run``, defined "on" ``cls`` as temporalio requires of a workflow's run method, calling
    the template's implementation, with its signature and resolved type hints (for the
    payload converter)."""

    @functools.wraps(impl)
    async def run(self: Any, *args: Any) -> Any:
        return await impl(self, *args)

    run.__annotations__ = typing.get_type_hints(impl)
    run.__module__ = cls.__module__
    run.__qualname__ = f"{cls.__name__}.run"
    run.__name__ = "run"
    return workflow.run(run)


def lookup(name: str) -> type[Template]:
    """The template subclass registered as workflow type ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LookupError(
            f"no pipeline named {name!r} in this worker: import the module that defines it "
            "in the worker process that runs its activities") from None


def setting(cls: type, attribute: str) -> Any:
    """A class attribute as set (a function stays a function, not a method)."""
    for klass in cls.__mro__:
        if attribute in klass.__dict__:
            value = klass.__dict__[attribute]
            return value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    raise AttributeError(attribute)
