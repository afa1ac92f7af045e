"""Histories built from recorded workflow tasks replay under temporalio's own Replayer (DESIGN §5).

Each test drives a real temporalio workflow instance by hand (``_drive``), records its tasks as
the engine does, builds the history and hands it to ``temporalio.worker.Replayer``: the same code
must replay, changed code must fail with ``NondeterminismError``.
"""

from __future__ import annotations

import pytest
import temporalio.exceptions
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, RetryState
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionTerminatedEventAttributes
from temporalio.bridge.proto.workflow_activation import (
    CancelWorkflow,
    DoUpdate,
    ResolveChildWorkflowExecution,
    ResolveChildWorkflowExecutionStart,
    ResolveChildWorkflowExecutionStartSuccess,
    ResolveRequestCancelExternalWorkflow,
    ResolveSignalExternalWorkflow,
    WorkflowActivation,
    WorkflowActivationJob,
)
from temporalio.bridge.proto.workflow_commands import (
    CancelTimer,
    CompleteWorkflowExecution,
    StartTimer,
    UpsertWorkflowSearchAttributes,
    WorkflowCommand,
)
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from dbosify._records import WorkflowTask
from dbosify.history import (
    CORE_USED_FLAGS,
    build_history,
    close_event_from_completion,
    core_randomness_seed,
)

from ._drive import Driver, drive, fail_activity, fire_timer, resolve_activity, signal
from ._workflows import (
    ACTIVITIES,
    BROKEN,
    TIMEOUT,
    Broken,
    Cancels,
    Charge,
    ChargeUncaught,
    Counter,
    Fails,
    Gather,
    Greeter,
    GreeterIgnoringSignals,
    OneActivity,
    OneActivityAsTimer,
    OneActivityOtherType,
    Parent,
    ParentOfAnotherKid,
    Patched,
    PatchRemovedOldBranch,
    Random,
    Sleeper,
    Succeeds,
)

E = EventType

# -- helpers ------------------------------------------------------------------------------------


async def replay(workflow_cls: type, history: WorkflowHistory) -> None:
    """Replay ``history`` with temporalio's Replayer; raises its replay failure."""
    replayer = Replayer(workflows=[workflow_cls], workflow_runner=UnsandboxedWorkflowRunner())
    await replayer.replay_workflow(history)


def types(events: list[HistoryEvent]) -> list[EventType.ValueType]:
    return [e.event_type for e in events]


def assert_well_formed(events: list[HistoryEvent]) -> None:
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    times = [e.event_time.ToMilliseconds() for e in events]
    assert times == sorted(times)
    assert events[0].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED


# -- one activity: shape, replay, nondeterminism, JSON ------------------------------------------

ONE_ACTIVITY_TYPES = [
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
]


async def test_one_activity_history_shape() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    events = d.history()
    assert_well_formed(events)
    assert types(events) == ONE_ACTIVITY_TYPES

    started = events[0].workflow_execution_started_event_attributes
    assert started.workflow_type.name == "OneActivity"
    assert started.task_queue.name == "tq"
    assert started.original_execution_run_id == d.run_id
    assert started.first_execution_run_id == d.run_id
    assert started.attempt == 1
    assert DataConverter.default.payload_converter.from_payloads(started.input.payloads) == [21]

    first_completed = events[3].workflow_task_completed_event_attributes
    assert (first_completed.scheduled_event_id, first_completed.started_event_id) == (2, 3)
    assert list(first_completed.sdk_metadata.core_used_flags) == list(CORE_USED_FLAGS)
    assert 1 in first_completed.sdk_metadata.core_used_flags

    scheduled = events[4].activity_task_scheduled_event_attributes
    assert scheduled.activity_id == "1"
    assert scheduled.activity_type.name == "double"
    assert scheduled.workflow_task_completed_event_id == 4
    assert scheduled.start_to_close_timeout.ToTimedelta() == TIMEOUT

    act_started = events[5].activity_task_started_event_attributes
    assert (act_started.scheduled_event_id, act_started.attempt) == (5, 1)
    act_completed = events[6].activity_task_completed_event_attributes
    assert (act_completed.scheduled_event_id, act_completed.started_event_id) == (5, 6)

    closed = events[10].workflow_execution_completed_event_attributes
    assert closed.workflow_task_completed_event_id == 10
    assert DataConverter.default.payload_converter.from_payloads(closed.result.payloads) == [42]
    # Core takes the workflow's clock from the workflow task started events.
    assert events[8].event_time == d.tasks[1].activation.timestamp


async def test_one_activity_replays() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    await replay(OneActivity, d.workflow_history())


async def test_changed_activity_type_is_nondeterministic() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    with pytest.raises(workflow.NondeterminismError, match="triple"):
        await replay(OneActivityOtherType, d.workflow_history())


async def test_changed_shape_is_nondeterministic() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    with pytest.raises(workflow.NondeterminismError):
        await replay(OneActivityAsTimer, d.workflow_history())


async def test_json_round_trip_replays_the_same() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    history = d.workflow_history()
    again = WorkflowHistory.from_json(history.workflow_id, history.to_json())
    assert list(again.events) == list(history.events)
    assert again.run_id == d.run_id
    await replay(OneActivity, again)
    with pytest.raises(workflow.NondeterminismError):
        await replay(OneActivityOtherType, again)


# -- other shapes -------------------------------------------------------------------------------


async def test_timer() -> None:
    d = await drive(Sleeper)
    events = d.history()
    assert_well_formed(events)
    assert E.EVENT_TYPE_TIMER_STARTED in types(events)
    fired = next(e for e in events if e.event_type == E.EVENT_TYPE_TIMER_FIRED)
    started = next(e for e in events if e.event_type == E.EVENT_TYPE_TIMER_STARTED)
    assert started.timer_started_event_attributes.timer_id == "1"
    assert started.timer_started_event_attributes.start_to_fire_timeout.seconds == 30
    assert fired.timer_fired_event_attributes.started_event_id == started.event_id
    await replay(Sleeper, d.workflow_history())


@pytest.mark.parametrize("wrap", [True, False])
async def test_failed_activity_records_the_raw_failure(wrap: bool) -> None:
    d = Driver(Charge)
    await d.start()
    err = ApplicationError("card declined", {"code": 51}, type="PaymentError", non_retryable=True)
    await d.activate(fail_activity(1, err, activity_type="charge", wrap=wrap))
    await d.close()
    if wrap:
        assert d.commands()[0].HasField("complete_workflow_execution")
    events = d.history()
    assert_well_formed(events)
    failed = next(e for e in events if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    attrs = failed.activity_task_failed_event_attributes
    assert attrs.failure.message == "card declined"
    assert attrs.failure.application_failure_info.type == "PaymentError"
    assert not attrs.failure.HasField("activity_failure_info")
    assert attrs.retry_state == (
        RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE if wrap else RetryState.RETRY_STATE_UNSPECIFIED
    )
    started = events[failed.event_id - 2]
    assert started.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED
    assert attrs.started_event_id == started.event_id
    if wrap:  # unwrapped, the live run took another path (no ActivityError) than Core's replay
        await replay(Charge, d.workflow_history())


async def test_uncaught_activity_failure_fails_the_workflow() -> None:
    d = await drive(ChargeUncaught, activities=ACTIVITIES)
    events = d.history()
    assert events[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    failure = events[-1].workflow_execution_failed_event_attributes.failure
    assert failure.HasField("activity_failure_info")
    assert failure.cause.application_failure_info.type == "PaymentError"
    await replay(ChargeUncaught, d.workflow_history())


@pytest.mark.parametrize("together", [False, True])
async def test_two_activities_via_gather(together: bool) -> None:
    d = Driver(Gather, 5)
    await d.start()
    if together:
        await d.activate(resolve_activity(2, 15), resolve_activity(1, 10))
    else:
        await d.activate(resolve_activity(2, 15))
        await d.activate(resolve_activity(1, 10))
    assert d.commands()[0].HasField("complete_workflow_execution")
    await d.close()
    events = d.history()
    assert_well_formed(events)
    kinds = types(events)
    assert kinds[3:6] == [
        E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    ]
    assert kinds.count(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == (2 if together else 3)
    await replay(Gather, d.workflow_history())


async def test_signal() -> None:
    d = await drive(Greeter, activities=ACTIVITIES, signals=[signal("set_name", "bob")])
    events = d.history()
    assert_well_formed(events)
    signaled = next(e for e in events if e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    attrs = signaled.workflow_execution_signaled_event_attributes
    assert attrs.signal_name == "set_name"
    assert attrs.identity == "signaller"
    assert events[signaled.event_id].event_type == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
    await replay(Greeter, d.workflow_history())
    with pytest.raises(workflow.NondeterminismError):
        await replay(GreeterIgnoringSignals, d.workflow_history())


async def test_update_is_delivered_again_on_replay() -> None:
    d = Driver(Greeter)
    await d.start()
    do_update = DoUpdate(
        id="u1",
        protocol_instance_id="u1",
        name="set_name_update",
        input=DataConverter.default.payload_converter.to_payloads(["eve"]),
        run_validator=True,
    )
    do_update.meta.update_id = "u1"
    do_update.meta.identity = "client-1"
    await d.activate(WorkflowActivationJob(do_update=do_update))
    await d.run(ACTIVITIES)
    await d.close()
    events = d.history()
    assert_well_formed(events)
    kinds = types(events)
    accepted_at = kinds.index(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    assert kinds[accepted_at + 1] == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
    accepted = events[accepted_at].workflow_execution_update_accepted_event_attributes
    assert accepted.accepted_request.input.name == "set_name_update"
    completed = events[accepted_at + 1].workflow_execution_update_completed_event_attributes
    assert completed.accepted_event_id == accepted_at + 1
    # Without the update delivered again, the replayed workflow would wait forever.
    await replay(Greeter, d.workflow_history())


async def test_patch_marker_is_the_one_core_reads() -> None:
    d = await drive(Patched, activities=ACTIVITIES)
    events = d.history()
    marker = next(e for e in events if e.event_type == E.EVENT_TYPE_MARKER_RECORDED)
    assert marker.marker_recorded_event_attributes.marker_name == "core_patch"
    # Replay takes the patched branch only if Core found the patch id in the marker.
    await replay(Patched, d.workflow_history())
    with pytest.raises(workflow.NondeterminismError):
        await replay(PatchRemovedOldBranch, d.workflow_history())


async def test_workflow_failure() -> None:
    d = await drive(Fails)
    events = d.history()
    assert events[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    failed = events[-1].workflow_execution_failed_event_attributes
    assert failed.failure.application_failure_info.type == "Refused"
    assert failed.workflow_task_completed_event_id == events[-2].event_id
    await replay(Fails, d.workflow_history())
    with pytest.raises(workflow.NondeterminismError):
        await replay(Succeeds, d.workflow_history())


async def test_continue_as_new() -> None:
    first = await drive(Counter, 0)
    assert first.completion is not None
    next_run_id = "run-2"
    close = close_event_from_completion(
        first.completion, time_ms=first.now_ms, new_execution_run_id=next_run_id
    )
    assert close is not None
    events = first.history(close_event=close)
    assert_well_formed(events)
    can = events[-1].workflow_execution_continued_as_new_event_attributes
    assert events[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert can.new_execution_run_id == next_run_id
    assert can.workflow_type.name == "Counter"
    assert can.task_queue.name == "tq"
    assert can.workflow_task_completed_event_id == events[-2].event_id
    assert DataConverter.default.payload_converter.from_payloads(can.input.payloads) == [1]
    await replay(Counter, first.workflow_history(close_event=close))

    second = await drive(
        Counter,
        1,
        run_id=next_run_id,
        continued_from_run_id=first.run_id,
        first_execution_run_id=first.run_id,
    )
    events = second.history()
    started = events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id == first.run_id
    assert started.first_execution_run_id == first.run_id
    assert events[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    await replay(Counter, second.workflow_history())


async def test_randomness_seed_is_cores() -> None:
    assert core_randomness_seed("a") != core_randomness_seed("b")
    d = await drive(Random, activities=ACTIVITIES)
    await replay(Random, d.workflow_history())


async def test_cancelled_activity_resolves_inside_the_same_task() -> None:
    d = Driver(Cancels)
    await d.start()
    await d.activate(signal("halt"))
    assert d.commands()[0].HasField("request_cancel_activity")
    # Core answers a TRY_CANCEL cancellation itself, in the same workflow task.
    wrapper = ActivityError(
        "Activity cancelled",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type="double",
        activity_id="1",
        retry_state=temporalio.exceptions.RetryState.CANCEL_REQUESTED,
    )
    wrapper.__cause__ = temporalio.exceptions.CancelledError("Cancelled")
    job = resolve_activity(1, None)
    job.resolve_activity.result.Clear()
    DataConverter.default.failure_converter.to_failure(
        wrapper,
        DataConverter.default.payload_converter,
        job.resolve_activity.result.cancelled.failure,
    )
    await d.activate(job, advance_ms=0)
    assert d.commands()[0].HasField("complete_workflow_execution")
    await d.close()
    events = d.history()
    assert_well_formed(events)
    assert types(events)[-4:] == [
        E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
    await replay(Cancels, d.workflow_history())


async def test_workflow_cancelled_while_sleeping() -> None:
    d = Driver(Sleeper)
    await d.start()
    await d.activate(WorkflowActivationJob(cancel_workflow=CancelWorkflow(reason="enough")))
    await d.close()
    events = d.history()
    assert_well_formed(events)
    requested = events[5]
    assert requested.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    assert requested.workflow_execution_cancel_requested_event_attributes.cause == "enough"
    assert types(events)[-2:] == [
        E.EVENT_TYPE_TIMER_CANCELED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    ]
    await replay(Sleeper, d.workflow_history())


# -- runs that are not (normally) closed --------------------------------------------------------


async def test_task_in_flight_ends_with_scheduled_and_started() -> None:
    d = Driver(OneActivity, 21)
    await d.start()
    await d.activate(resolve_activity(1, 42))
    events = d.history(final_completion=None)
    assert_well_formed(events)
    assert types(events) == ONE_ACTIVITY_TYPES[:9]
    await replay(OneActivity, WorkflowHistory("wf-1", events))
    await d.close()


async def test_no_task_yet_and_parent_info() -> None:
    d = Driver(OneActivity, 21)
    events = d.history(parent_workflow_id="mom", parent_run_id="mom-run")
    assert types(events) == ONE_ACTIVITY_TYPES[:2]
    started = events[0].workflow_execution_started_event_attributes
    assert started.parent_workflow_namespace == "default"
    assert started.parent_workflow_execution.workflow_id == "mom"
    assert started.parent_workflow_execution.run_id == "mom-run"


async def test_terminated_close_event_replaces_the_derived_one() -> None:
    d = Driver(Greeter)
    await d.start()
    await d.close()
    terminated = HistoryEvent(
        event_id=0,
        event_type=E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        workflow_execution_terminated_event_attributes=WorkflowExecutionTerminatedEventAttributes(
            reason="stop it", identity="admin"
        ),
    )
    terminated.event_time.FromMilliseconds(d.now_ms + 60_000)
    events = d.history(close_event=terminated)
    assert_well_formed(events)
    assert types(events)[-2:] == [
        E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    ]
    assert events[-1].event_time.ToMilliseconds() == d.now_ms + 60_000
    await replay(Greeter, WorkflowHistory("wf-1", events))


async def test_close_event_is_used_instead_of_the_completions() -> None:
    d = await drive(OneActivity, 21, activities=ACTIVITIES)
    assert d.completion is not None
    close = close_event_from_completion(d.completion, time_ms=d.now_ms)
    assert close is not None and close.event_id == 0
    assert close_event_from_completion(d.tasks[1].previous_completion, time_ms=0) is None  # type: ignore[arg-type]
    assert types(d.history(close_event=close)) == ONE_ACTIVITY_TYPES


async def test_workflow_task_failure_and_retry() -> None:
    BROKEN["on"] = True
    d = Driver(Broken)
    await d.start()
    await d.activate(fire_timer(1))
    assert d.completion is not None and d.completion.HasField("failed")
    events = d.history()
    assert_well_formed(events)
    assert types(events)[-4:] == [
        E.EVENT_TYPE_TIMER_FIRED,
        E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        E.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    ]
    failed = events[-1].workflow_task_failed_event_attributes
    assert failed.failure.message == "bug"
    assert (failed.scheduled_event_id, failed.started_event_id) == (
        len(events) - 2,
        len(events) - 1,
    )

    # Retried with the same jobs and failing again: Temporal writes nothing more.
    await d.retry_last()
    assert d.completion is not None and d.completion.HasField("failed")
    assert types(d.history()) == types(events)

    # Fixed code: the retry completes and shows up as attempt 3 of the task.
    BROKEN["on"] = False
    await d.retry_last()
    await d.close()
    assert d.commands()[0].HasField("complete_workflow_execution")
    fixed = d.history()
    assert_well_formed(fixed)
    assert types(fixed)[len(events) :] == [
        E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        E.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
    assert fixed[len(events)].workflow_task_scheduled_event_attributes.attempt == 3
    assert types(fixed).count(E.EVENT_TYPE_TIMER_FIRED) == 1
    await replay(Broken, d.workflow_history())


async def test_child_workflow_and_external_workflows() -> None:
    d = Driver(Parent)
    await d.start()
    start = d.commands()[0].start_child_workflow_execution
    assert (start.seq, start.workflow_type) == (1, "Kid")
    await d.activate(
        WorkflowActivationJob(
            resolve_child_workflow_execution_start=ResolveChildWorkflowExecutionStart(
                seq=1, succeeded=ResolveChildWorkflowExecutionStartSuccess(run_id="kid-run")
            )
        )
    )
    done = WorkflowActivationJob(
        resolve_child_workflow_execution=ResolveChildWorkflowExecution(seq=1)
    )
    done.resolve_child_workflow_execution.result.completed.result.CopyFrom(
        DataConverter.default.payload_converter.to_payloads(["hi ann"])[0]
    )
    await d.activate(done)
    assert d.commands()[0].HasField("signal_external_workflow_execution")
    await d.activate(
        WorkflowActivationJob(resolve_signal_external_workflow=ResolveSignalExternalWorkflow(seq=1))
    )
    assert d.commands()[0].HasField("request_cancel_external_workflow_execution")
    await d.activate(
        WorkflowActivationJob(
            resolve_request_cancel_external_workflow=ResolveRequestCancelExternalWorkflow(seq=1)
        )
    )
    assert d.commands()[0].HasField("complete_workflow_execution")
    await d.close()
    events = d.history()
    assert_well_formed(events)
    kinds = [E.Name(e.event_type) for e in events if "WORKFLOW_TASK" not in E.Name(e.event_type)]
    assert kinds == [
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED",
        "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED",
        "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED",
        "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
        "EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED",
        "EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
        "EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    ]
    await replay(Parent, d.workflow_history())
    with pytest.raises(workflow.NondeterminismError):
        await replay(ParentOfAnotherKid, d.workflow_history())


def test_commands_in_the_order_core_sends_them() -> None:
    """Core drops a command cancelled in the task that issued it and moves the closing command
    last; synthetic records, since the SDK rarely produces these orders."""
    d = Driver(Sleeper)
    activation = WorkflowActivation(run_id=d.run_id, jobs=[d.initialize_job()])
    activation.timestamp.FromMilliseconds(d.start_ms)
    completion = WorkflowActivationCompletion(run_id=d.run_id)
    completion.successful.commands.extend(
        [
            WorkflowCommand(start_timer=StartTimer(seq=1)),
            WorkflowCommand(cancel_timer=CancelTimer(seq=1)),
            WorkflowCommand(complete_workflow_execution=CompleteWorkflowExecution()),
            WorkflowCommand(upsert_workflow_search_attributes=UpsertWorkflowSearchAttributes()),
            WorkflowCommand(complete_workflow_execution=CompleteWorkflowExecution()),
        ]
    )
    events = build_history(
        run_id=d.run_id,
        start_request=d.start_request,
        start_time_ms=d.start_ms,
        first_execution_run_id=d.run_id,
        tasks=[WorkflowTask(activation)],
        final_completion=completion,
    )
    assert types(events)[3:] == [
        E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
