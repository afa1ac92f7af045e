"""Test helpers for workflows and activities, with ``temporalio.testing``'s names.

- ``ActivityEnvironment`` needs no server and is temporalio's own class, re-exported
  (``dbosify.testing.ActivityEnvironment is temporalio.testing.ActivityEnvironment``): it runs an
  activity function with a chosen ``activity.info()``, heartbeat callback and cancellation.
- ``WorkflowEnvironment`` is temporalio's, on a database: ``start_local()`` opens a fresh
  embedded one (or the database you name) instead of starting a dev server.

Deliberately not here: ``TimeSkipper`` and ``TimeSkippingConfig``, and the time-skipping
environments (``WorkflowEnvironment.start_time_skipping`` raises ``NotImplementedError``): time
skipping is a feature of Temporal's test servers (a virtual clock, a fast-forward RPC) that
dbosify's service does not implement.
"""

from temporalio.testing import ActivityEnvironment

from dbosify.testing._workflow import WorkflowEnvironment

__all__ = ["ActivityEnvironment", "WorkflowEnvironment"]
