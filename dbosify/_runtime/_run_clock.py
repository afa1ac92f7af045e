"""A run's own virtual clock: Temporal's per-workflow time skipping (``TimeSkippingConfig``,
temporalio's ``TimeSkipper`` and ``WorkflowEnvironment.start_time_skipping_v2``).

A run with a time-skipping config keeps an offset: how far its clock is ahead of the engine's.
Everything the run's clock governs (``workflow.now()``, its timers, its activities' and its own
timeouts) reads engine time plus that offset. While skipping is enabled and the run waits on
time alone -- nothing in flight: no activity or local activity, no child, no signal or cancel
to send, nothing handed to it -- the offset jumps to the run's next deadline, or to the end of
its fast-forward, whichever comes first (the fast-forward then completes and skipping stops).
Activities run at wall speed. The state is stored as JSON in ``dbosify_runs.time_skipping``,
written before the run acts on a skip, so a recovered run keeps its virtual time. A run
without a config has no clock: its driver reads engine time, as always.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from temporalio.api.common.v1 import TimeSkippingConfig, TimeSkippingInfo

DEFAULT_MAX_SKIPS = 100
"""Skips allowed in a session when the config leaves ``max_session_skip_count`` at 0 (Temporal's
server applies a default of its own, protecting a run from skipping retries forever)."""


@dataclass
class RunClock:
    """The time-skipping state of one run (stored with the run)."""

    offset_ms: int = 0
    """How far the run's clock is ahead of the engine's."""
    start_offset_ms: int = 0
    """The offset the run started with: its parent's at the child's start (a child inherits its
    parent's virtual time), else 0. The run's first activation and its timeouts count from it."""
    enabled: bool = False
    ever_enabled: bool = False
    disable_propagation: bool = False
    max_skips: int = 0
    skips: int = 0
    """Skips in the current session (reset each time a config is applied)."""
    ff_id: str = ""
    ff_duration_ms: int = 0
    ff_target_ms: int | None = None
    """The virtual time at which the fast-forward completes."""
    ff_completed: bool = False

    # Stored form ----------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunClock:
        data: dict[str, Any] = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def of_run(cls, row: Any, config: TimeSkippingConfig | None,
               engine_now_ms: int) -> RunClock | None:
        """The clock of a run: as stored, else from its start request's config (None: the run
        has no time skipping)."""
        stored = getattr(row, "time_skipping", None)
        if stored:
            return cls.from_json(stored)
        if config is None:
            return None
        clock = cls()
        clock.apply(config, engine_now_ms)
        return clock

    # Configuration --------------------------------------------------------------------------

    def now_ms(self, engine_now_ms: int) -> int:
        return engine_now_ms + self.offset_ms

    def apply(self, config: TimeSkippingConfig, engine_now_ms: int) -> None:
        """Take a new config (at start, or by ``UpdateWorkflowExecutionOptions``): a new
        session, and a new fast-forward counted from the run's current virtual time."""
        self.enabled = config.enabled
        self.ever_enabled = self.ever_enabled or config.enabled
        self.disable_propagation = config.disable_propagation
        self.max_skips = config.max_session_skip_count
        self.skips = 0
        if config.HasField("fast_forward_config"):
            ff = config.fast_forward_config
            self.ff_id = ff.id
            self.ff_duration_ms = int(ff.duration.ToMilliseconds())
            self.ff_target_ms = self.now_ms(engine_now_ms) + self.ff_duration_ms
            self.ff_completed = False
        elif config.enabled or self.ff_target_ms is not None:
            # Unbounded skipping (or skipping turned off) replaces a fast-forward in progress.
            self.ff_id, self.ff_duration_ms, self.ff_target_ms = "", 0, None
            self.ff_completed = False

    def child_clock(self) -> RunClock:
        """The clock a child started now begins with: this virtual time, and the ``enabled``
        flag unless propagation is disabled."""
        enabled = self.enabled and not self.disable_propagation
        return RunClock(offset_ms=self.offset_ms, start_offset_ms=self.offset_ms,
                        enabled=enabled, ever_enabled=enabled,
                        disable_propagation=self.disable_propagation,
                        max_skips=self.max_skips)

    def continued_clock(self) -> RunClock:
        """The clock of the run that follows this one in its chain (continue-as-new, retry,
        cron): the same session and fast-forward, starting at this virtual time."""
        return replace(self, start_offset_ms=self.offset_ms)

    # Skipping -------------------------------------------------------------------------------

    def skip_target(self, virtual_now_ms: int, next_deadline_ms: int | None) -> int | None:
        """Where the clock jumps now (the run waits on time alone), or None to stay."""
        target = next_deadline_ms
        if self.ff_target_ms is not None and not self.ff_completed:
            target = self.ff_target_ms if target is None else min(target, self.ff_target_ms)
        return target

    def advance_to(self, virtual_now_ms: int, target_ms: int) -> None:
        """Jump to ``target_ms`` (not before now); completes a fast-forward that is reached
        and counts the skip against the session's limit."""
        if target_ms > virtual_now_ms:
            self.offset_ms += target_ms - virtual_now_ms
            self.skips += 1
        if self.ff_target_ms is not None and not self.ff_completed and \
                target_ms >= self.ff_target_ms:
            self.ff_completed = True
            self.enabled = False  # Time skipping stops once the fast-forward is done.
        if self.skips >= (self.max_skips or DEFAULT_MAX_SKIPS):
            self.enabled = False

    # What DescribeWorkflowExecution shows ---------------------------------------------------

    def info(self, current_ms: int) -> TimeSkippingInfo:
        info = TimeSkippingInfo(current_session_skip_count=self.skips)
        info.current_time.FromMilliseconds(current_ms)
        config = info.effective_config
        config.enabled = self.enabled
        config.disable_propagation = self.disable_propagation
        config.max_session_skip_count = self.max_skips or DEFAULT_MAX_SKIPS
        if self.ff_id:
            config.fast_forward_config.id = self.ff_id
            config.fast_forward_config.duration.FromMilliseconds(self.ff_duration_ms)
            ff = info.fast_forward_info
            ff.fast_forward_id = self.ff_id
            ff.fast_forward_duration.FromMilliseconds(self.ff_duration_ms)
            if self.ff_target_ms is not None:
                ff.target_time.FromMilliseconds(self.ff_target_ms)
            ff.has_completed = self.ff_completed
        return info
