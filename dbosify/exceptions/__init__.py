"""Temporal's exception hierarchy (``ApplicationError``, ``ActivityError``, ``CancelledError`` ...).

Every name here is temporalio's own object, re-exported from ``temporalio.exceptions``
(``dbosify.exceptions.ApplicationError is temporalio.exceptions.ApplicationError``), so an
``except temporalio.exceptions.ApplicationError`` clause catches what dbosify raises, and the
reverse.
"""

from temporalio.exceptions import (
    ActivityAlreadyStartedError,
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    InvalidVersioningOverrideError,
    NexusOperationAlreadyStartedError,
    NexusOperationError,
    RetryState,
    ServerError,
    TemporalError,
    TerminatedError,
    TimeoutError,
    TimeoutType,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

__all__ = [
    "ActivityAlreadyStartedError",
    "ActivityError",
    "ApplicationError",
    "ApplicationErrorCategory",
    "CancelledError",
    "ChildWorkflowError",
    "FailureError",
    "InvalidVersioningOverrideError",
    "NexusOperationAlreadyStartedError",
    "NexusOperationError",
    "RetryState",
    "ServerError",
    "TemporalError",
    "TerminatedError",
    "TimeoutError",
    "TimeoutType",
    "WorkflowAlreadyStartedError",
    "is_cancelled_exception",
]
