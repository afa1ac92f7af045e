"""Start the DBOS workflows waiting on this process's own DBOS queue now, not at its next poll.

A run this process takes over (a dead predecessor's, a released one, one whose DBOS workflow
failed) is resumed onto the process's own DBOS queue (``DBOS.resume_workflow(queue_name=...)``),
because DBOS hands a workflow to one runner only through a queue's atomic ENQUEUED -> PENDING
claim (that is how DBOS's own recovery works, ``dbos/_recovery.py``). DBOS's queue thread finds
a newly registered queue up to 1 s after launch and then polls every second (DESIGN §10), so a
restarted notebook would wait about two seconds for a run it takes at once (DESIGN §9.3). This
module makes that same claim and dispatch immediately, from the process itself.

Why private DBOS names: DBOS 3.4 has no public "dequeue now" call. The two used here are
exactly what its queue thread calls (``dbos/_queue.py``, ``start_dequeued_workflows``):
``SystemDatabase.start_queued_workflows`` (the atomic claim) and
``dbos._core.execute_dequeued_workflow`` (run a claimed workflow from its status). Racing the
queue thread is safe: the claim admits one runner, so the loser finds nothing to dequeue. If
either name changes, ``tests/_runtime/test_dispatch.py`` fails; at run time a failure here is
only logged, since the queue thread still starts the workflow at its next poll.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

logger = logging.getLogger("dbosify")


def dispatch_own_queue(queue: Any, executor_id: str, app_version: str) -> list[str]:
    """Claim every workflow enqueued on ``queue`` (this process's own DBOS queue) and start it
    here; the ids started. Blocking: call it off the event loop."""
    from dbos._core import execute_dequeued_workflow  # Private: see the module docstring.
    from dbos._dbos import _get_dbos_instance  # Private: the launched DBOS, for the two calls.

    dbos = _get_dbos_instance()
    owner_xid = str(uuid.uuid4())
    ids, _ = dbos._sys_db.start_queued_workflows(queue, executor_id, app_version, None, 0,
                                                 owner_xid=owner_xid)
    if not ids:
        return []
    statuses = {s["workflow_uuid"]: s for s in dbos._sys_db.get_workflow_statuses(ids)}
    started: list[str] = []
    for workflow_id in ids:
        status = statuses.get(workflow_id) or dbos._sys_db.get_workflow_status(workflow_id)
        if status is None:
            continue
        try:
            execute_dequeued_workflow(dbos, status, owner_xid)
        except Exception:
            # Logged and skipped, as DBOS's queue thread does with the same failure.
            logger.exception("dbosify could not start DBOS workflow %s", workflow_id)
            continue
        started.append(workflow_id)
    return started
