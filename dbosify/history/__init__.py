"""Temporal histories of dbosify runs, built from the records the engine keeps (DESIGN §5).

:func:`build_history` turns a run's recorded workflow tasks into the Temporal ``HistoryEvent``\\ s a
Temporal server and Core worker would have written, so temporalio's ``WorkflowHistory`` JSON and
its ``Replayer`` work on them offline. :func:`close_event_from_completion` gives the event that
closes a run, which the engine stores with the run.
"""

from dbosify.history._build import CORE_USED_FLAGS, build_history
from dbosify.history._events import close_event_from_completion, commands_as_sent
from dbosify.history._seed import core_randomness_seed

__all__ = [
    "CORE_USED_FLAGS",
    "build_history",
    "close_event_from_completion",
    "commands_as_sent",
    "core_randomness_seed",
]
