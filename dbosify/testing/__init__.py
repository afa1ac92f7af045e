"""Test helpers for workflows and activities, with ``temporalio.testing``'s names.

- ``ActivityEnvironment`` needs no server and is temporalio's own class, re-exported
  (``dbosify.testing.ActivityEnvironment is temporalio.testing.ActivityEnvironment``): it runs an
  activity function with a chosen ``activity.info()``, heartbeat callback and cancellation.
- ``WorkflowEnvironment`` is temporalio's, on a database: ``start_local()`` opens a fresh
  embedded one (or the database you name) instead of starting a dev server;
  ``start_time_skipping()`` one whose clock skips ahead while a test waits (timers, activity
  retries and timeouts, schedules), as Temporal's time-skipping test server does; and
  ``start_time_skipping_v2(ts_config=...)`` one where each workflow has its own virtual clock
  (``fast_forward(handle, duration)``, ``get_current_time(handle)``,
  ``with_time_skipping_disabled()``), as Temporal's per-workflow time skipping.
- ``TimeSkipper`` and ``TimeSkippingConfig`` are temporalio's own classes, re-exported: ``TimeSkipper(client)`` works on a dbosify client too, whose database answers the
  time-skipping RPCs.
"""

from temporalio.testing import ActivityEnvironment, TimeSkipper, TimeSkippingConfig

from dbosify.testing._workflow import WorkflowEnvironment

__all__ = [
    "ActivityEnvironment",
    "TimeSkipper",
    "TimeSkippingConfig",
    "WorkflowEnvironment",
]
