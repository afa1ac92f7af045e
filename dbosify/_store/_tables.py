"""The tables dbosify owns, beside DBOS's own system tables in the same database.

DBOS keeps each run's durable event stream (its step outputs); these tables hold what DBOS has no
place for: Temporal's visibility record of each run, the inbox of events produced outside the run
(signals, cancel requests, activity results from other processes), activity tasks travelling
between processes, and the liveness of worker processes.
"""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA_VERSION = 4
"""Bumped whenever a table below changes; a database written by a newer version is refused, and
an older one is upgraded in place (see ``dbosify._store._database.migrate``)."""

metadata = sa.MetaData()

meta = sa.Table(
    "dbosify_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

runs = sa.Table(
    "dbosify_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("workflow_id", sa.String(1000), nullable=False),
    sa.Column("first_execution_run_id", sa.String(64), nullable=False),
    sa.Column("workflow_type", sa.String(1000), nullable=False),
    sa.Column("task_queue", sa.String(1000), nullable=False),
    # temporalio.api.enums.v1.WorkflowExecutionStatus values (1 = RUNNING ... 7 = TIMED_OUT).
    sa.Column("status", sa.Integer, nullable=False),
    # Epoch milliseconds. execution_time differs from start_time only with a start delay.
    sa.Column("start_time_ms", sa.BigInteger, nullable=False),
    sa.Column("execution_time_ms", sa.BigInteger, nullable=False),
    sa.Column("close_time_ms", sa.BigInteger, nullable=True),
    # Serialized temporalio.api.workflowservice.v1.StartWorkflowExecutionRequest: input, timeouts,
    # retry policy, memo, search attributes, header and user metadata as the client sent them.
    sa.Column("start_request", sa.LargeBinary, nullable=False),
    # Serialized temporalio.api.history.v1.HistoryEvent of the close event, once closed.
    sa.Column("close_event", sa.LargeBinary, nullable=True),
    sa.Column("request_id", sa.String(255), nullable=True),
    sa.Column("randomness_seed", sa.BigInteger, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    sa.Column("continued_from_run_id", sa.String(64), nullable=True),
    sa.Column("parent_workflow_id", sa.String(1000), nullable=True),
    sa.Column("parent_run_id", sa.String(64), nullable=True),
    # The first run of the tree a child belongs to (Temporal's root workflow execution); NULL
    # for a run without a parent, which is its own root.
    sa.Column("root_workflow_id", sa.String(1000), nullable=True),
    sa.Column("root_run_id", sa.String(64), nullable=True),
    # A child's ParentClosePolicy (Core's enum), applied to it however its parent closes: by
    # the parent's close, termination or timeout, in that close's transaction.
    sa.Column("parent_close_policy", sa.SmallInteger, nullable=True),
    # Serialized temporalio.api.common.v1.Memo, current (start memo plus upserts).
    sa.Column("memo", sa.LargeBinary, nullable=True),
    # DBOS executor id of the process running this run; NULL while no worker has taken it.
    sa.Column("owner", sa.String(255), nullable=True),
    # Number of events recorded so far (Temporal's history length, approximately, while running).
    sa.Column("history_length", sa.Integer, nullable=False, server_default="0"),
    # Last workflow task failure (workflow code raised, deadlocked, or was nondeterministic).
    sa.Column("task_failure", sa.Text, nullable=True),
    # Written with the close, in the same statement: the run's last workflow task if no DBOS
    # step recorded it, and the completion that closed the run (JSON, dbosify._records).
    # Added in schema version 2.
    sa.Column("close_records", sa.Text, nullable=True),
    # The worker build id the run is pinned to (Temporal's worker versioning): only a worker
    # with this build id for the run's task queue claims, takes over or drives it. NULL: an
    # unversioned run, for any worker of its task queue. Added in schema version 3.
    sa.Column("build_id", sa.String(255), nullable=True),
    # A run's own virtual clock (per-workflow time skipping: its offset from the engine's clock,
    # config and fast-forward; JSON, dbosify._runtime._run_clock). NULL for a run without time
    # skipping. Added in schema version 4.
    sa.Column("time_skipping", sa.Text, nullable=True),
)
sa.Index("dbosify_runs_by_id", runs.c.namespace, runs.c.workflow_id, runs.c.start_time_ms)
# At most one running execution per workflow id: the database enforces Temporal's rule.
sa.Index(
    "dbosify_runs_one_running",
    runs.c.namespace,
    runs.c.workflow_id,
    unique=True,
    sqlite_where=runs.c.status == 1,
    postgresql_where=runs.c.status == 1,
)
sa.Index("dbosify_runs_unowned", runs.c.task_queue, runs.c.status, runs.c.owner)
sa.Index("dbosify_runs_by_parent", runs.c.parent_run_id,
         sqlite_where=runs.c.parent_run_id.isnot(None),
         postgresql_where=runs.c.parent_run_id.isnot(None))

search_attributes = sa.Table(
    "dbosify_search_attributes",
    metadata,
    sa.Column("run_id", sa.String(64), sa.ForeignKey("dbosify_runs.run_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # temporalio.common.SearchAttributeIndexedValueType name: Text, Keyword, Int, Double, Bool,
    # Datetime or KeywordList (one row per list element).
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("value_text", sa.Text, nullable=True),
    sa.Column("value_int", sa.BigInteger, nullable=True),
    sa.Column("value_double", sa.Float, nullable=True),
    sa.Column("value_bool", sa.Boolean, nullable=True),
    # Datetime values, as epoch milliseconds like the runs' own times.
    sa.Column("value_time_ms", sa.BigInteger, nullable=True),
)
sa.Index("dbosify_sa_by_run", search_attributes.c.run_id)
sa.Index("dbosify_sa_by_name", search_attributes.c.name, search_attributes.c.value_text)

inbox = sa.Table(
    "dbosify_inbox",
    metadata,
    # The id orders a run's incoming events; the run consumes them in id order.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    # signal | cancel | terminate | update | activity_result
    sa.Column("kind", sa.String(32), nullable=False),
    # A serialized protobuf whose type depends on kind.
    sa.Column("payload", sa.LargeBinary, nullable=False),
    # Makes a retried producer write idempotent (Temporal request ids, activity attempt keys).
    sa.Column("dedup_key", sa.String(255), nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("run_id", "dedup_key", name="dbosify_inbox_dedup"),
)
sa.Index("dbosify_inbox_by_run", inbox.c.run_id, inbox.c.id)

activity_tasks = sa.Table(
    "dbosify_activity_tasks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("task_queue", sa.String(1000), nullable=False),
    # Serialized dbosify activity task (see dbosify._runtime._activity_task).
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    sa.Column("claimed_ms", sa.BigInteger, nullable=True),
    # Set by the run's owner to stop a claimed attempt: a
    # temporalio.bridge.proto.activity_task.ActivityCancelReason value. Added in schema version 2.
    sa.Column("cancel_reason", sa.Integer, nullable=True),
    # The build id of the run's version when the activity is on the run's own task queue
    # (Temporal pins those activities too): only a worker with that build id claims it. NULL:
    # any worker of the task queue. Added in schema version 3.
    sa.Column("build_id", sa.String(255), nullable=True),
    sa.UniqueConstraint("run_id", "seq", "attempt", name="dbosify_activity_task_once"),
)
sa.Index("dbosify_activity_tasks_by_queue", activity_tasks.c.task_queue, activity_tasks.c.claimed_by)

updates = sa.Table(
    "dbosify_updates",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("update_id", sa.String(255), primary_key=True),
    # temporalio.api.enums.v1.UpdateWorkflowExecutionLifecycleStage: 2 accepted, 3 completed
    # (a rejected update is completed with a failure outcome, as Temporal reports it).
    sa.Column("stage", sa.Integer, nullable=False),
    # Serialized temporalio.api.update.v1.Outcome once completed or rejected.
    sa.Column("outcome", sa.LargeBinary, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

queries = sa.Table(
    "dbosify_queries",
    metadata,
    # Queries for runs driven by another process: asked here, answered by the owner. Never
    # part of a run's history.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(255), nullable=False),
    # Serialized WorkflowActivationJob (query_workflow) and, once answered, the WorkflowCommand.
    sa.Column("job", sa.LargeBinary, nullable=False),
    sa.Column("answer", sa.LargeBinary, nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
)
sa.Index("dbosify_queries_by_owner", queries.c.owner, queries.c.answer)

heartbeats = sa.Table(
    "dbosify_activity_heartbeats",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    # Serialized temporalio.api.common.v1.Payloads of the last heartbeat details.
    sa.Column("details", sa.LargeBinary, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

processes = sa.Table(
    "dbosify_processes",
    metadata,
    sa.Column("executor_id", sa.String(255), primary_key=True),
    sa.Column("identity", sa.String(1000), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    # Space-separated task queues this process serves (informational; claims use runs.task_queue).
    sa.Column("task_queues", sa.Text, nullable=False, server_default=""),
    sa.Column("started_ms", sa.BigInteger, nullable=False),
    sa.Column("heartbeat_ms", sa.BigInteger, nullable=False),
    sa.Column("stopped", sa.Boolean, nullable=False, server_default=sa.false()),
)

notebook_cells = sa.Table(
    "dbosify_notebook_cells",
    metadata,
    # The source of every version of every ``%%workflow`` cell a notebook ran, so a new kernel
    # re-imports them (DESIGN §6). Keyed by the notebook: its path when Jupyter tells the
    # kernel, else the name given to ``%dbosify connect --notebook``, else the working
    # directory. Added in schema version 3.
    sa.Column("notebook", sa.String(1000), primary_key=True),
    # The cell's content hash (with its task queue): the build id its workers serve.
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("task_queue", sa.String(1000), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    # JSON list of the workflow types and activity names the cell defines.
    sa.Column("names", sa.Text, nullable=False),
    # When the cell last ran with this content: the newest version of a name is the latest.
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)

schedules = sa.Table(
    "dbosify_schedules",
    metadata,
    # Temporal schedules (DESIGN §9.4). Any process with a worker fires a due schedule: it locks
    # the row, starts the runs and advances next_due_ms in one transaction, so a due time fires
    # once however many processes serve the database.
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("schedule_id", sa.String(1000), primary_key=True),
    # Serialized temporalio.api.schedule.v1.Schedule (spec normalized as Temporal keeps it:
    # cron strings compiled into calendars), policies, action and state.
    sa.Column("schedule", sa.LargeBinary, nullable=False),
    # Serialized temporalio.api.schedule.v1.ScheduleInfo: counters and create/update times.
    sa.Column("info", sa.LargeBinary, nullable=False),
    # Serialized Memo and SearchAttributes of the schedule itself.
    sa.Column("memo", sa.LargeBinary, nullable=True),
    sa.Column("search_attributes", sa.LargeBinary, nullable=True),
    # The next time the spec acts (nominal) and when it is due (plus jitter); NULL: never again.
    sa.Column("next_nominal_ms", sa.BigInteger, nullable=True),
    sa.Column("next_due_ms", sa.BigInteger, nullable=True),
    # JSON: runs this schedule started that may still be running, and starts buffered by the
    # overlap policy until they end (dbosify._runtime._scheduler).
    sa.Column("running", sa.Text, nullable=False, server_default="[]"),
    sa.Column("buffer", sa.Text, nullable=False, server_default="[]"),
    # Set while a firing process must look at the schedule before its next due time (buffered
    # starts, or runs to watch for pause-on-failure).
    sa.Column("attention", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("request_id", sa.String(255), nullable=True),
    # Bumped by every write: Temporal's conflict token, and a guard against a lost update.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)
sa.Index("dbosify_schedules_due", schedules.c.next_due_ms)

schedule_actions = sa.Table(
    "dbosify_schedule_actions",
    metadata,
    # The recent actions of each schedule (the runs it started), newest kept.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("namespace", sa.String(255), nullable=False),
    sa.Column("schedule_id", sa.String(1000), nullable=False),
    sa.Column("nominal_ms", sa.BigInteger, nullable=False),
    sa.Column("scheduled_ms", sa.BigInteger, nullable=False),
    sa.Column("actual_ms", sa.BigInteger, nullable=False),
    sa.Column("workflow_id", sa.String(1000), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
)
sa.Index("dbosify_schedule_actions_by_schedule", schedule_actions.c.namespace,
         schedule_actions.c.schedule_id, schedule_actions.c.id)
