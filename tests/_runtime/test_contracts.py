"""The internal names of temporalio and DBOS dbosify relies on (pinned versions, DESIGN §2, §9).

If an upgrade changes one of them, these fail loudly here rather than deep inside a run.
"""

from __future__ import annotations

import inspect

import dbos
import temporalio
from temporalio.worker import WorkflowInstanceDetails
from temporalio.worker._activity import _ActivityWorker

from dbosify._records import WorkflowTask


def test_pinned_versions() -> None:
    assert temporalio.__version__ == "1.35.0"
    from importlib.metadata import version

    assert version("dbos") == "3.4.0"


def test_activity_worker_contract() -> None:
    params = inspect.signature(_ActivityWorker.__init__).parameters
    assert list(params) == [
        "self", "bridge_worker", "task_queue", "activities", "activity_executor",
        "shared_state_manager", "data_converter", "interceptors", "metric_meter", "client",
        "encode_headers",
    ]
    for name in ("run", "notify_shutdown", "wait_all_completed"):
        assert callable(getattr(_ActivityWorker, name))
    import temporalio.bridge.worker as bridge_worker

    assert issubclass(bridge_worker.PollShutdownError, Exception)  # type: ignore[attr-defined]


def test_workflow_instance_details_fields() -> None:
    fields = list(WorkflowInstanceDetails.__dataclass_fields__)
    assert fields == [
        "payload_converter_factory", "failure_converter_class", "interceptor_classes", "defn",
        "info", "randomness_seed", "extern_functions", "disable_eager_activity_execution",
        "worker_level_failure_exception_types", "patch_activation_callback",
        "last_completion_result", "last_failure", "default_workflow_logic_flags",
    ]


def test_service_client_private_call() -> None:
    params = inspect.signature(temporalio.service.ServiceClient._rpc_call).parameters
    assert list(params) == ["self", "rpc", "req", "resp_type", "service", "retry", "metadata",
                            "timeout"]


def test_dbos_public_calls_used() -> None:
    for name in ("list_workflow_steps_async", "resume_workflow_async", "get_workflow_status_async",
                 "start_workflow_async", "run_step_async", "listen_queues", "register_queue",
                 "destroy", "launch"):
        assert callable(getattr(dbos.DBOS, name)), name


def test_records_round_trip() -> None:
    from temporalio.bridge.proto.workflow_activation import WorkflowActivation
    from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion

    from dbosify._records import ActivityAttemptInfo, record_from_dict

    activation = WorkflowActivation(run_id="r")
    activation.jobs.add().fire_timer.seq = 3
    completion = WorkflowActivationCompletion(run_id="r")
    completion.successful.commands.add().start_timer.seq = 4
    task = WorkflowTask(activation, completion, {1: ActivityAttemptInfo(2, 5, "me")})
    back = record_from_dict(task.to_record())
    assert back == task
