"""Notebook widgets for dbosify runs, built from stock ipywidgets (DESIGN §6).

Their state lives in traitlets (``rows``, ``status``, ``output``, ...), so code and tests drive
them without a browser; every read of the database runs on the notebook's background loop, so a
refreshing widget never blocks the kernel.

- :class:`RunsMonitor`: a live table of runs (status, type, started, duration, current activity).
- :class:`RunPanel`: one run's history with buttons to signal, query, update, cancel, terminate.
- :class:`ProgressBar`: activities done of scheduled, or the workflow's current details.

Needs the ``[notebook]`` extra (ipywidgets).
"""

from dbosify.widgets._monitor import RunsMonitor
from dbosify.widgets._panel import RunPanel, parse_args
from dbosify.widgets._progress import ProgressBar

__all__ = ["ProgressBar", "RunPanel", "RunsMonitor", "parse_args"]
