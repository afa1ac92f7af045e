"""Test helpers for workflows and activities, with ``temporalio.testing``'s names.

- ``ActivityEnvironment`` needs no server and is temporalio's own class, re-exported
  (``dbosify.testing.ActivityEnvironment is temporalio.testing.ActivityEnvironment``): it runs an
  activity function with a chosen ``activity.info()``, heartbeat callback and cancellation.
- ``WorkflowEnvironment`` is temporalio's, on a database: ``start_local()`` opens a fresh
  embedded one (or the database you name) instead of starting a dev server, and
  ``start_time_skipping()`` one whose clock skips ahead while a test waits (timers, activity
  retries and timeouts, schedules), as Temporal's time-skipping test server does.

Deliberately not here: ``TimeSkipper`` and ``TimeSkippingConfig``, and
``WorkflowEnvironment.start_time_skipping_v2`` (it raises ``NotImplementedError``): they
configure per-workflow time skipping on Temporal's dev server; dbosify's clock skips for every
workflow of the environment (``start_time_skipping``).
"""

from temporalio.testing import ActivityEnvironment

from dbosify.testing._workflow import WorkflowEnvironment

__all__ = ["ActivityEnvironment", "WorkflowEnvironment"]
