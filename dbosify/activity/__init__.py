"""Activity definitions and the activity context: ``temporalio.activity``, unchanged.

Every name here is temporalio's own object, re-exported (``dbosify.activity.defn is
temporalio.activity.defn``), so activities written for Temporal need only their import changed.

The context functions (``info()``, ``heartbeat()``, ``is_cancelled()``, ``wait_for_cancelled()``,
``logger`` ...) read temporalio's activity context variable; dbosify's worker sets that same
context when it runs an activity, so they behave as under a Temporal worker.
"""

from temporalio.activity import (
    ActivityCancellationDetails,
    Info,
    LoggerAdapter,
    cancellation_details,
    client,
    defn,
    heartbeat,
    in_activity,
    info,
    is_cancelled,
    is_worker_shutdown,
    logger,
    metric_meter,
    payload_converter,
    raise_complete_async,
    shield_thread_cancel_exception,
    wait_for_cancelled,
    wait_for_cancelled_sync,
    wait_for_worker_shutdown,
    wait_for_worker_shutdown_sync,
)

__all__ = [
    "ActivityCancellationDetails",
    "Info",
    "LoggerAdapter",
    "cancellation_details",
    "client",
    "defn",
    "heartbeat",
    "in_activity",
    "info",
    "is_cancelled",
    "is_worker_shutdown",
    "logger",
    "metric_meter",
    "payload_converter",
    "raise_complete_async",
    "shield_thread_cancel_exception",
    "wait_for_cancelled",
    "wait_for_cancelled_sync",
    "wait_for_worker_shutdown",
    "wait_for_worker_shutdown_sync",
]
