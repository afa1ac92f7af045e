"""Creating and activating temporalio's own workflow instance (DESIGN §9.1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone

import temporalio.common
import temporalio.converter
import temporalio.worker
import temporalio.workflow
from temporalio.bridge.proto.workflow_activation import InitializeWorkflow, WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, WorkflowRunner

from dbosify._runtime._held_output import HeldOutput

DEFAULT_DEADLOCK_TIMEOUT = 2.0
"""Seconds workflow code may hold the thread before it is reported as a potential deadlock,
as temporalio's worker does."""


class DeadlockError(Exception):
    """Workflow code did not yield (it blocked the thread, e.g. with ``time.sleep``)."""


@dataclass(frozen=True)
class WorkflowRegistration:
    """What a worker knows about one workflow type."""

    defn: temporalio.workflow._Definition
    runner: WorkflowRunner
    data_converter: temporalio.converter.DataConverter
    interceptor_classes: Sequence[type[temporalio.worker.WorkflowInboundInterceptor]]
    failure_exception_types: Sequence[type[BaseException]]
    namespace: str
    task_queue: str
    deadlock_timeout: float | None
    slots: asyncio.Semaphore | None = None
    """The worker's ``max_concurrent_workflow_tasks``: activations it runs at once."""


def create_instance(reg: WorkflowRegistration, activation: WorkflowActivation,
                    init: InitializeWorkflow) -> WorkflowInstance:
    """A new instance for a run; must be called with an event loop running in this thread
    (temporalio's instance captures it)."""
    parent = None
    if init.HasField("parent_workflow_info"):
        parent = temporalio.workflow.ParentInfo(
            namespace=init.parent_workflow_info.namespace,
            run_id=init.parent_workflow_info.run_id,
            workflow_id=init.parent_workflow_info.workflow_id,
        )
    root = None
    if init.HasField("root_workflow"):
        root = temporalio.workflow.RootInfo(run_id=init.root_workflow.run_id,
                                            workflow_id=init.root_workflow.workflow_id)
    info = temporalio.workflow.Info(
        attempt=init.attempt,
        continued_run_id=init.continued_from_execution_run_id or None,
        cron_schedule=init.cron_schedule or None,
        execution_timeout=init.workflow_execution_timeout.ToTimedelta()
        if init.HasField("workflow_execution_timeout") else None,
        first_execution_run_id=init.first_execution_run_id,
        headers=dict(init.headers),
        namespace=reg.namespace,
        original_execution_run_id=init.original_execution_run_id or activation.run_id,
        parent=parent,
        root=root,
        raw_memo=dict(init.memo.fields),
        retry_policy=temporalio.common.RetryPolicy.from_proto(init.retry_policy)
        if init.HasField("retry_policy") else None,
        run_id=activation.run_id,
        run_timeout=init.workflow_run_timeout.ToTimedelta()
        if init.HasField("workflow_run_timeout") else None,
        search_attributes=temporalio.converter.decode_search_attributes(init.search_attributes),
        start_time=activation.timestamp.ToDatetime().replace(tzinfo=timezone.utc),
        workflow_start_time=init.start_time.ToDatetime().replace(tzinfo=timezone.utc),
        task_queue=reg.task_queue,
        task_timeout=init.workflow_task_timeout.ToTimedelta(),
        typed_search_attributes=temporalio.converter.decode_typed_search_attributes(
            init.search_attributes),
        workflow_id=init.workflow_id,
        workflow_type=init.workflow_type,
        priority=temporalio.common.Priority._from_proto(init.priority),
    )
    details = WorkflowInstanceDetails(
        payload_converter_factory=reg.data_converter._new_payload_converter,
        failure_converter_class=reg.data_converter.failure_converter_class,
        interceptor_classes=reg.interceptor_classes,
        defn=reg.defn,
        info=info,
        randomness_seed=init.randomness_seed,
        # temporalio's worker checks here that a local activity is registered; dbosify checks
        # when it runs it (the run's worker may change), failing the attempt with a clear error.
        extern_functions={"__temporal_assert_local_activity_valid": _accept_local_activity},
        disable_eager_activity_execution=True,
        worker_level_failure_exception_types=reg.failure_exception_types,
        patch_activation_callback=None,
        last_completion_result=init.last_completion_result,
        last_failure=init.continued_failure if init.HasField("continued_failure") else None,
    )
    return reg.runner.create_instance(details)


def _accept_local_activity(name: str) -> None:
    """See ``extern_functions`` in :func:`create_instance`."""


async def activate(instance: WorkflowInstance, activation: WorkflowActivation,
                   executor: concurrent.futures.Executor,
                   deadlock_timeout: float | None,
                   slots: asyncio.Semaphore | None = None,
                   held: HeldOutput | None = None) -> WorkflowActivationCompletion:
    """Run one activation off the caller's loop (temporalio's instance clears the thread's
    running loop), reporting code that holds the thread too long as a potential deadlock.
    With ``held``, what the code prints waits there (:mod:`._held_output`)."""
    if slots is not None:
        async with slots:
            return await activate(instance, activation, executor, deadlock_timeout, held=held)
    loop = asyncio.get_running_loop()
    if held is not None:
        future = loop.run_in_executor(executor, held.call, instance.activate, activation)
    else:
        future = loop.run_in_executor(executor, instance.activate, activation)
    if deadlock_timeout is None:
        return await future
    # A timer rather than wait_for(shield(...)): this runs for every activation.
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    timer = loop.call_later(deadlock_timeout, wake)
    try:
        await waiter
    finally:
        timer.cancel()
    if future.done():
        return future.result()
    # The stuck activation may end one day; its outcome is not wanted then.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    raise DeadlockError(
        f"Potential deadlock detected: workflow didn't yield within {deadlock_timeout} "
        "second(s); workflow code must not block the thread (use workflow.sleep or "
        "asyncio.sleep instead of time.sleep, and activities for I/O)")
