"""Temporal histories of dbosify runs, built from the records the engine keeps (DESIGN §5).

:func:`build_history` turns a run's recorded workflow tasks into the Temporal ``HistoryEvent``\\ s a
Temporal server and Core worker would have written, so temporalio's ``WorkflowHistory`` JSON and
its ``Replayer`` work on them offline. :func:`close_event_from_completion` gives the event that
closes a run, which the engine stores with the run. :func:`history_rows` and :func:`run_rows`
give histories and run lists as plain rows (one dict per event or run, payloads decoded), the data
behind the notebook's DataFrames and the CLI's tables.
"""

from dbosify.history._build import CORE_USED_FLAGS, build_history
from dbosify.history._events import close_event_from_completion, commands_as_sent
from dbosify.history._rows import (
    HISTORY_COLUMNS,
    RUN_COLUMNS,
    event_type_name,
    history_rows,
    history_rows_sync,
    run_row,
    run_rows,
    run_rows_sync,
    run_version,
)
from dbosify.history._seed import core_randomness_seed

__all__ = [
    "CORE_USED_FLAGS",
    "HISTORY_COLUMNS",
    "RUN_COLUMNS",
    "build_history",
    "close_event_from_completion",
    "commands_as_sent",
    "core_randomness_seed",
    "event_type_name",
    "history_rows",
    "history_rows_sync",
    "run_row",
    "run_rows",
    "run_rows_sync",
    "run_version",
]
