"""dbosify in a notebook: the plain Python API under the magics and widgets.

Everything here is usable without IPython: the magics (``dbosify.magics``) and widgets
(``dbosify.widgets``) are thin layers over these functions. pandas is imported only by the
functions that return DataFrames.
"""

from dbosify.notebook._cells import CellModule
from dbosify.notebook._config import Dbosify, NotebookUsageError
from dbosify.notebook._frames import history_frame, load_history, runs_frame
from dbosify.notebook._handle import RunHandle
from dbosify.notebook._loop import BackgroundLoop, background_loop, run_sync
from dbosify.notebook._replay import replay_frame
from dbosify.notebook._session import (
    RestoreReport,
    Session,
    Status,
    cancel,
    close,
    connect,
    current_session,
    define,
    execute,
    query,
    result,
    signal,
    start,
    status,
    terminate,
    update,
)
from dbosify.notebook._timeline import Timeline, timeline

__all__ = [
    "BackgroundLoop",
    "CellModule",
    "Dbosify",
    "NotebookUsageError",
    "RestoreReport",
    "RunHandle",
    "Session",
    "Status",
    "Timeline",
    "background_loop",
    "cancel",
    "close",
    "connect",
    "current_session",
    "define",
    "execute",
    "history_frame",
    "load_history",
    "query",
    "replay_frame",
    "result",
    "run_sync",
    "runs_frame",
    "signal",
    "start",
    "status",
    "terminate",
    "timeline",
    "update",
]
