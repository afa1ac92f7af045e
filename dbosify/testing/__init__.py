"""Test helpers for workflows and activities, from ``temporalio.testing``.

``ActivityEnvironment`` needs no server and is temporalio's own class, re-exported
(``dbosify.testing.ActivityEnvironment is temporalio.testing.ActivityEnvironment``): it runs an
activity function with a chosen ``activity.info()``, heartbeat callback and cancellation.

Deliberately not here yet:

- ``WorkflowEnvironment``: temporalio's starts or connects to a Temporal server (a dev server or
  the time-skipping test server). dbosify will provide its own, on an embedded database.
- ``TimeSkipper`` and ``TimeSkippingConfig``: per-workflow time skipping is a server feature
  (a config stamped on each start, a fast-forward RPC) that dbosify's service does not implement.
"""

from temporalio.testing import ActivityEnvironment

__all__ = ["ActivityEnvironment"]
