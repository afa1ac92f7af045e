"""The engine's clock: wall time, plus whatever a time-skipping test environment has skipped.

Every time the engine stores or compares (run starts, timers, timeouts, ``workflow.now()``,
schedules) comes from :func:`now_ms`. Outside a time-skipping environment the offset is 0.
"""

from __future__ import annotations

import time

_offset_ms = 0


def now_ms() -> int:
    """Epoch milliseconds on the engine's clock."""
    return int(time.time() * 1000) + _offset_ms


def skip(ms: int) -> None:
    """Move the clock forward by ``ms`` (a time-skipping test environment)."""
    global _offset_ms
    if ms > 0:
        _offset_ms += ms


def skipped_ms() -> int:
    """How far the clock is ahead of wall time."""
    return _offset_ms


def reset() -> None:
    """Back to wall time (the time-skipping environment ended)."""
    global _offset_ms
    _offset_ms = 0
