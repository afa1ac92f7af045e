"""Temporal's activity retry rules (what the server decides after a failed attempt)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.api.enums.v1 import RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure


@dataclass(frozen=True)
class RetryDecision:
    """Whether to run another attempt, and when; else why not (Temporal's ``RetryState``)."""

    retry: bool
    delay_ms: int = 0
    state: RetryState.ValueType = RetryState.RETRY_STATE_IN_PROGRESS


_NEVER_RETRIED = (TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE,
                  TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START)


def decide_retry(policy: RetryPolicyProto | None, attempt: int, failure: Failure, *,
                 now_ms: int, schedule_to_close_deadline_ms: int | None) -> RetryDecision:
    """Apply a retry policy to the failure of ``attempt`` (1-based), as Temporal's server does.

    Defaults (no policy): 1 s initial interval, backoff 2.0, maximum interval 100 x initial,
    unlimited attempts.

    >>> from temporalio.api.failure.v1 import Failure
    >>> decide_retry(None, 1, Failure(message="x"), now_ms=0, schedule_to_close_deadline_ms=None)
    RetryDecision(retry=True, delay_ms=1000, state=1)
    """
    app = failure.application_failure_info if failure.HasField("application_failure_info") \
        else None
    if failure.HasField("canceled_failure_info"):
        return RetryDecision(False, state=RetryState.RETRY_STATE_CANCEL_REQUESTED)
    if failure.HasField("timeout_failure_info") and \
            failure.timeout_failure_info.timeout_type in _NEVER_RETRIED:
        # As the server's isRetryable: only start-to-close and heartbeat timeouts are retried.
        return RetryDecision(False, state=RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE)
    if app is not None and app.non_retryable:
        return RetryDecision(False, state=RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE)

    initial_ms = 1000
    backoff = 2.0
    maximum_ms: int | None = None
    max_attempts = 0
    non_retryable_types: list[str] = []
    if policy is not None:
        if policy.HasField("initial_interval"):
            initial_ms = max(1, int(policy.initial_interval.ToMilliseconds()))
        if policy.backoff_coefficient:
            backoff = policy.backoff_coefficient
        if policy.HasField("maximum_interval"):
            maximum_ms = int(policy.maximum_interval.ToMilliseconds()) or None
        max_attempts = policy.maximum_attempts
        non_retryable_types = list(policy.non_retryable_error_types)
    if maximum_ms is None:
        maximum_ms = 100 * initial_ms

    if app is not None and app.type in non_retryable_types:
        return RetryDecision(False, state=RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE)
    if max_attempts > 0 and attempt >= max_attempts:
        return RetryDecision(False, state=RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED)

    if app is not None and app.HasField("next_retry_delay"):
        delay_ms = int(app.next_retry_delay.ToMilliseconds())
    else:
        delay_ms = int(min(initial_ms * backoff ** (attempt - 1), maximum_ms))
    if schedule_to_close_deadline_ms is not None and \
            now_ms + delay_ms >= schedule_to_close_deadline_ms:
        return RetryDecision(False, state=RetryState.RETRY_STATE_TIMEOUT)
    return RetryDecision(True, delay_ms=delay_ms)
