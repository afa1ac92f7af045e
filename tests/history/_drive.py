"""Drive a real temporalio workflow instance by hand and record its tasks as the engine does.

A :class:`Driver` plays the part of Core and server for one run, just far enough for tests: it
builds the ``InitializeWorkflow`` job from a start request, feeds activations to temporalio's own
workflow instance and records each one as a :class:`WorkflowTask` whose ``previous_completion`` is
the completion of the task before it, exactly as the engine stores a run. :meth:`Driver.run`
executes activities and fires timers until the workflow stops asking for anything.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timezone
from typing import Any

import temporalio.common
import temporalio.converter
import temporalio.exceptions
import temporalio.workflow
from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import Payloads, WorkflowType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import StartWorkflowExecutionRequest
from temporalio.bridge.proto.activity_result import ActivityResolution
from temporalio.bridge.proto.workflow_activation import (
    FireTimer,
    InitializeWorkflow,
    NotifyHasPatch,
    RemoveFromCache,
    ResolveActivity,
    SignalWorkflow,
    WorkflowActivation,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
)

from dbosify._records import ActivityAttemptInfo, WorkflowTask
from dbosify.history import build_history, core_randomness_seed

START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
CONVERTER = temporalio.converter.DataConverter.default


def _payloads(*values: Any) -> list[Any]:
    return list(CONVERTER.payload_converter.to_payloads(list(values)))


def resolve_activity(seq: int, value: Any) -> WorkflowActivationJob:
    """A ResolveActivity job delivering ``value`` as the activity's result."""
    job = WorkflowActivationJob(resolve_activity=ResolveActivity(seq=seq))
    job.resolve_activity.result.completed.result.CopyFrom(_payloads(value)[0])
    return job


def fail_activity(
    seq: int,
    error: BaseException,
    *,
    activity_type: str,
    activity_id: str | None = None,
    retry_state: temporalio.exceptions.RetryState = (
        temporalio.exceptions.RetryState.NON_RETRYABLE_FAILURE
    ),
    identity: str = "worker-1",
    wrap: bool = True,
) -> WorkflowActivationJob:
    """A ResolveActivity job failing the activity with ``error``.

    With ``wrap`` (the default) the failure is wrapped as Core wraps it for the workflow: an
    ``ActivityError`` whose cause is ``error``, encoded with temporalio's failure converter.
    """
    exc: BaseException = error
    if wrap:
        wrapper = temporalio.exceptions.ActivityError(
            "Activity task failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity=identity,
            activity_type=activity_type,
            activity_id=activity_id or str(seq),
            retry_state=retry_state,
        )
        wrapper.__cause__ = error
        exc = wrapper
    job = WorkflowActivationJob(resolve_activity=ResolveActivity(seq=seq))
    resolution: ActivityResolution = job.resolve_activity.result
    CONVERTER.failure_converter.to_failure(
        exc, CONVERTER.payload_converter, resolution.failed.failure
    )
    return job


def fire_timer(seq: int) -> WorkflowActivationJob:
    """A FireTimer job."""
    return WorkflowActivationJob(fire_timer=FireTimer(seq=seq))


def signal(name: str, *args: Any, identity: str = "signaller") -> WorkflowActivationJob:
    """A SignalWorkflow job for signal ``name`` with ``args``."""
    return WorkflowActivationJob(
        signal_workflow=SignalWorkflow(signal_name=name, input=_payloads(*args), identity=identity)
    )


def notify_has_patch(patch_id: str) -> WorkflowActivationJob:
    """A NotifyHasPatch job (sent on replay for a recorded patch marker)."""
    return WorkflowActivationJob(notify_has_patch=NotifyHasPatch(patch_id=patch_id))


def start_request(
    workflow: type,
    *args: Any,
    workflow_id: str = "wf-1",
    task_queue: str = "tq",
    namespace: str = "default",
    identity: str = "client-1",
) -> StartWorkflowExecutionRequest:
    """The request temporalio's client would send to start ``workflow`` with ``args``."""
    defn = temporalio.workflow._Definition.must_from_class(workflow)
    assert defn.name is not None
    return StartWorkflowExecutionRequest(
        namespace=namespace,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name=defn.name),
        task_queue=TaskQueue(name=task_queue),
        input=Payloads(payloads=_payloads(*args)),
        workflow_task_timeout=Duration(seconds=10),
        identity=identity,
        request_id=str(uuid.uuid4()),
    )


class Driver:
    """One run of ``workflow``, driven by hand. Use from async code (it needs a running loop)."""

    def __init__(
        self,
        workflow: type,
        *args: Any,
        workflow_id: str = "wf-1",
        run_id: str | None = None,
        task_queue: str = "tq",
        start_ms: int = START_MS,
        step_ms: int = 1000,
        worker_identity: str = "worker-1",
        continued_from_run_id: str | None = None,
        first_execution_run_id: str | None = None,
    ) -> None:
        self.workflow = workflow
        self.defn = temporalio.workflow._Definition.must_from_class(workflow)
        self.run_id = run_id or str(uuid.uuid4())
        self.first_execution_run_id = first_execution_run_id or self.run_id
        self.continued_from_run_id = continued_from_run_id
        self.start_request = start_request(
            workflow, *args, workflow_id=workflow_id, task_queue=task_queue
        )
        self.start_ms = start_ms
        self.now_ms = start_ms
        self.step_ms = step_ms
        self.worker_identity = worker_identity
        self.tasks: list[WorkflowTask] = []
        self.completion: WorkflowActivationCompletion | None = None
        self._flags: set[int] = set()
        self._instance: WorkflowInstance | None = None

    # -- activations ----------------------------------------------------------------------------

    def initialize_job(self) -> WorkflowActivationJob:
        """InitializeWorkflow as the engine derives it from the start request."""
        req = self.start_request
        init = InitializeWorkflow(
            workflow_type=req.workflow_type.name,
            workflow_id=req.workflow_id,
            arguments=list(req.input.payloads),
            randomness_seed=core_randomness_seed(self.run_id),
            headers=dict(req.header.fields),
            identity=req.identity,
            workflow_task_timeout=req.workflow_task_timeout,
            continued_from_execution_run_id=self.continued_from_run_id or "",
            first_execution_run_id=self.first_execution_run_id,
            attempt=1,
            original_execution_run_id=self.run_id,
        )
        init.start_time.FromMilliseconds(self.start_ms)
        return WorkflowActivationJob(initialize_workflow=init)

    async def start(self) -> WorkflowActivationCompletion:
        """Create the instance and feed it the run's first activation."""
        init = self.initialize_job()
        self._instance = self._create_instance(init.initialize_workflow)
        return await self.activate(init, advance_ms=0)

    async def activate(
        self,
        *jobs: WorkflowActivationJob,
        advance_ms: int | None = None,
        activity_attempts: Mapping[int, ActivityAttemptInfo] | None = None,
    ) -> WorkflowActivationCompletion:
        """Record and feed one activation of ``jobs``; returns (and keeps) its completion."""
        assert self._instance is not None, "start() first"
        self.now_ms += self.step_ms if advance_ms is None else advance_ms
        activation = WorkflowActivation(
            run_id=self.run_id,
            available_internal_flags=sorted(self._flags),
            jobs=list(jobs),
        )
        activation.timestamp.FromMilliseconds(self.now_ms)
        self.tasks.append(WorkflowTask(activation, self.completion, dict(activity_attempts or {})))
        # As temporalio's worker does: activate() leaves its thread with no running loop.
        completion = await asyncio.to_thread(self._instance.activate, activation)
        self._flags.update(completion.successful.used_internal_flags)
        self.completion = completion
        return completion

    async def retry_last(self) -> WorkflowActivationCompletion:
        """Retry the latest task as Temporal does after a task failure: a fresh instance replays
        every earlier activation (not recorded again), then gets the same jobs as a new task."""
        assert self._instance is not None and self.tasks
        await self.close()
        first = self.tasks[0].activation.jobs[0].initialize_workflow
        self._instance = self._create_instance(first)
        completions = [t.previous_completion for t in self.tasks[1:]] + [self.completion]
        for task, completion in zip(self.tasks[:-1], completions[:-1], strict=True):
            if completion is None or completion.HasField("failed"):
                continue  # a failed task left nothing behind: its retry is what counts
            replayed = WorkflowActivation()
            replayed.CopyFrom(task.activation)
            replayed.is_replaying = True
            await asyncio.to_thread(self._instance.activate, replayed)
        return await self.activate(*self.tasks[-1].activation.jobs)

    async def close(self) -> None:
        """Evict the instance (not recorded: eviction is no event of the run)."""
        if self._instance is None:
            return
        activation = WorkflowActivation(
            run_id=self.run_id,
            jobs=[WorkflowActivationJob(remove_from_cache=RemoveFromCache(message="done"))],
        )
        await asyncio.to_thread(self._instance.activate, activation)
        self._instance = None

    def commands(self) -> list[WorkflowCommand]:
        """The commands of the latest completion."""
        assert self.completion is not None
        return list(self.completion.successful.commands)

    # -- running to the end ---------------------------------------------------------------------

    async def run(
        self,
        activities: Mapping[str, Callable[..., Any]] | None = None,
        *,
        max_tasks: int = 50,
    ) -> WorkflowActivationCompletion:
        """Start if needed, then run activities and fire timers, one per activation, until the
        workflow closes, fails its task, or waits on something else (a signal, ...)."""
        activities = activities or {}
        if self._instance is None:
            await self.start()
        pending: list[WorkflowCommand] = []
        for _ in range(max_tasks):
            assert self.completion is not None
            if self.completion.WhichOneof("status") != "successful":
                return self.completion
            pending.extend(
                c
                for c in self.completion.successful.commands
                if c.WhichOneof("variant") in ("schedule_activity", "start_timer")
            )
            if not pending:
                return self.completion
            command = pending.pop(0)
            if command.HasField("start_timer"):
                await self.activate(fire_timer(command.start_timer.seq))
                continue
            await self._run_activity(command, activities)
        raise AssertionError(f"workflow still running after {max_tasks} tasks")

    async def _run_activity(
        self, command: WorkflowCommand, activities: Mapping[str, Callable[..., Any]]
    ) -> None:
        cmd = command.schedule_activity
        fn = activities[cmd.activity_type]
        args = CONVERTER.payload_converter.from_payloads(list(cmd.arguments))
        attempt = ActivityAttemptInfo(
            attempt=1, started_ms=self.now_ms + self.step_ms // 2, identity=self.worker_identity
        )
        try:
            job = resolve_activity(cmd.seq, fn(*args))
        except Exception as err:
            job = fail_activity(
                cmd.seq,
                err,
                activity_type=cmd.activity_type,
                activity_id=cmd.activity_id,
                identity=self.worker_identity,
            )
        await self.activate(job, activity_attempts={cmd.seq: attempt})

    # -- histories ------------------------------------------------------------------------------

    def history(self, **overrides: Any) -> list[HistoryEvent]:
        """The run's history, built from the recorded tasks."""
        kwargs: dict[str, Any] = {
            "run_id": self.run_id,
            "start_request": self.start_request,
            "start_time_ms": self.start_ms,
            "first_execution_run_id": self.first_execution_run_id,
            "tasks": self.tasks,
            "final_completion": self.completion,
            "continued_from_run_id": self.continued_from_run_id,
            "identity": self.worker_identity,
        }
        kwargs.update(overrides)
        return build_history(**kwargs)

    def workflow_history(self, **overrides: Any) -> WorkflowHistory:
        """:meth:`history` wrapped in temporalio's ``WorkflowHistory``."""
        return WorkflowHistory(self.start_request.workflow_id, self.history(**overrides))

    # -- instance -------------------------------------------------------------------------------

    def _create_instance(self, init: InitializeWorkflow) -> WorkflowInstance:
        # Built the way temporalio's _WorkflowWorker._create_workflow_instance builds it.
        info = temporalio.workflow.Info(
            attempt=init.attempt,
            continued_run_id=init.continued_from_execution_run_id or None,
            cron_schedule=None,
            execution_timeout=None,
            first_execution_run_id=init.first_execution_run_id,
            headers=dict(init.headers),
            namespace=self.start_request.namespace,
            original_execution_run_id=init.original_execution_run_id,
            parent=None,
            root=None,
            raw_memo={},
            retry_policy=None,
            run_id=self.run_id,
            run_timeout=None,
            search_attributes={},
            start_time=init.start_time.ToDatetime().replace(tzinfo=timezone.utc),
            workflow_start_time=init.start_time.ToDatetime().replace(tzinfo=timezone.utc),
            task_queue=self.start_request.task_queue.name,
            task_timeout=init.workflow_task_timeout.ToTimedelta(),
            typed_search_attributes=temporalio.common.TypedSearchAttributes.empty,
            workflow_id=init.workflow_id,
            workflow_type=init.workflow_type,
            priority=temporalio.common.Priority.default,
        )
        details = WorkflowInstanceDetails(
            payload_converter_factory=CONVERTER.payload_converter_class,
            failure_converter_class=CONVERTER.failure_converter_class,
            interceptor_classes=[],
            defn=self.defn,
            info=info,
            randomness_seed=init.randomness_seed,
            extern_functions={},
            disable_eager_activity_execution=True,
            worker_level_failure_exception_types=[],
            patch_activation_callback=None,
            last_completion_result=Payloads(),
            last_failure=None,
        )
        return UnsandboxedWorkflowRunner().create_instance(details)


async def drive(
    workflow: type,
    *args: Any,
    activities: Mapping[str, Callable[..., Any]] | None = None,
    signals: Sequence[WorkflowActivationJob] = (),
    **driver_kwargs: Any,
) -> Driver:
    """Run ``workflow`` to its end (feeding ``signals`` one per activation once it waits)."""
    driver = Driver(workflow, *args, **driver_kwargs)
    await driver.run(activities)
    for job in signals:
        await driver.activate(job)
        await driver.run(activities)
    await driver.close()
    return driver
