"""Temporal's retry rules, decided the way the server decides them."""

from __future__ import annotations

from temporalio.api.common.v1 import RetryPolicy
from temporalio.api.enums.v1 import RetryState, TimeoutType
from temporalio.api.failure.v1 import Failure

from dbosify._runtime._retry import decide_retry


def app_failure(type_: str = "Boom", non_retryable: bool = False,
                next_delay_ms: int | None = None) -> Failure:
    failure = Failure(message="boom")
    failure.application_failure_info.type = type_
    failure.application_failure_info.non_retryable = non_retryable
    if next_delay_ms is not None:
        failure.application_failure_info.next_retry_delay.FromMilliseconds(next_delay_ms)
    return failure


def policy(**kw: object) -> RetryPolicy:
    p = RetryPolicy()
    if "initial_ms" in kw:
        p.initial_interval.FromMilliseconds(int(kw["initial_ms"]))  # type: ignore[call-overload]
    if "backoff" in kw:
        p.backoff_coefficient = float(kw["backoff"])  # type: ignore[arg-type]
    if "max_ms" in kw:
        p.maximum_interval.FromMilliseconds(int(kw["max_ms"]))  # type: ignore[call-overload]
    if "attempts" in kw:
        p.maximum_attempts = int(kw["attempts"])  # type: ignore[call-overload]
    if "non_retryable" in kw:
        p.non_retryable_error_types.extend(kw["non_retryable"])  # type: ignore[arg-type]
    return p


def test_default_policy_backs_off_exponentially_and_caps_at_100x() -> None:
    delays = [decide_retry(None, a, app_failure(), now_ms=0,
                           schedule_to_close_deadline_ms=None).delay_ms for a in (1, 2, 3, 8, 20)]
    assert delays == [1000, 2000, 4000, 100_000, 100_000]


def test_policy_intervals_coefficient_and_maximum() -> None:
    p = policy(initial_ms=100, backoff=3.0, max_ms=500)
    delays = [decide_retry(p, a, app_failure(), now_ms=0,
                           schedule_to_close_deadline_ms=None).delay_ms for a in (1, 2, 3)]
    assert delays == [100, 300, 500]


def test_maximum_attempts_reached() -> None:
    decision = decide_retry(policy(attempts=3), 3, app_failure(), now_ms=0,
                            schedule_to_close_deadline_ms=None)
    assert not decision.retry
    assert decision.state == RetryState.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED
    assert decide_retry(policy(attempts=3), 2, app_failure(), now_ms=0,
                        schedule_to_close_deadline_ms=None).retry


def test_non_retryable_flag_and_types() -> None:
    flagged = decide_retry(None, 1, app_failure(non_retryable=True), now_ms=0,
                           schedule_to_close_deadline_ms=None)
    by_type = decide_retry(policy(non_retryable=["Boom"]), 1, app_failure("Boom"), now_ms=0,
                           schedule_to_close_deadline_ms=None)
    other = decide_retry(policy(non_retryable=["Other"]), 1, app_failure("Boom"), now_ms=0,
                         schedule_to_close_deadline_ms=None)
    assert (flagged.retry, by_type.retry, other.retry) == (False, False, True)
    assert flagged.state == by_type.state == RetryState.RETRY_STATE_NON_RETRYABLE_FAILURE


def test_next_retry_delay_overrides_the_policy() -> None:
    decision = decide_retry(policy(initial_ms=100), 1, app_failure(next_delay_ms=7000), now_ms=0,
                            schedule_to_close_deadline_ms=None)
    assert decision.retry and decision.delay_ms == 7000


def test_no_retry_past_the_schedule_to_close_deadline() -> None:
    decision = decide_retry(None, 1, app_failure(), now_ms=10_000,
                            schedule_to_close_deadline_ms=10_500)
    assert not decision.retry and decision.state == RetryState.RETRY_STATE_TIMEOUT


def test_timeouts_retry_except_schedule_timeouts() -> None:
    def timeout(kind: TimeoutType.ValueType) -> Failure:
        failure = Failure(message="timeout")
        failure.timeout_failure_info.timeout_type = kind
        return failure

    assert decide_retry(None, 1, timeout(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE), now_ms=0,
                        schedule_to_close_deadline_ms=None).retry
    assert decide_retry(None, 1, timeout(TimeoutType.TIMEOUT_TYPE_HEARTBEAT), now_ms=0,
                        schedule_to_close_deadline_ms=None).retry
    assert not decide_retry(None, 1, timeout(TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE),
                            now_ms=0, schedule_to_close_deadline_ms=None).retry
