"""Reads and writes of dbosify's own tables. Blocking: callers on an event loop use a thread.

:class:`Store` is one database's tables, made of one part per concept: runs (``_runs``), their
inboxes (``_inbox``), activity attempts and heartbeats (``_activity_tasks``), updates and
queries (``_messages``), worker processes (``_processes``).
"""

from __future__ import annotations

from dbosify._store._activity_tasks import ActivityTaskRows
from dbosify._store._messages import MessageRows
from dbosify._store._processes import ProcessRows


class Store(ActivityTaskRows, MessageRows, ProcessRows):
    """dbosify's tables in one database (SQLite file or Postgres), shared by every process."""
