"""IPython magics for dbosify: ``%load_ext dbosify.magics``.

::

    %load_ext dbosify.magics        # connect, start the in-process worker, restore saved cells
    %dbosify connect [URL] [--notebook NAME]
    %dbosify status

    %%workflow [--task-queue Q]     # a cell of @workflow.defn classes and @activity.defn functions

    %workflow start TYPE [ARG ...] [--id ID] [--task-queue Q] [--wait]
    %workflow signal ID NAME [ARG ...]
    %workflow query ID NAME [ARG ...]
    %workflow update ID NAME [ARG ...]
    %workflow cancel ID
    %workflow terminate ID [--reason TEXT]
    %workflow result ID [--timeout SECONDS]
    %workflow runs [VISIBILITY QUERY]
    %workflow history ID
    %workflow timeline ID
    %workflow replay ID
    %workflow watch [ID | QUERY]

Each magic is a thin layer over :mod:`dbosify.notebook`; a usage mistake is one line
(IPython's ``UsageError``), never a traceback.
"""

from dbosify.magics._magics import (
    DbosifyMagics,
    load_ipython_extension,
    parse_args,
    unload_ipython_extension,
)

__all__ = ["DbosifyMagics", "load_ipython_extension", "parse_args", "unload_ipython_extension"]
