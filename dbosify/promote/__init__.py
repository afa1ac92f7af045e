"""Promotion: a notebook's ``%%workflow`` cells become an importable, scheduled pipeline.

>>> from dbosify.promote import promote_notebook            # doctest: +SKIP
>>> promote_notebook("notebooks/daily_report.ipynb", every="1h")  # doctest: +SKIP

``dbosify promote`` is this function from the shell; ``dbosify worker`` serves the result.
"""

from dbosify.promote._notebook import NotebookSource, PromotionError, WorkflowCell, read_notebook
from dbosify.promote._promote import Promotion, fingerprint, parse_every, promote_notebook

__all__ = [
    "NotebookSource",
    "Promotion",
    "PromotionError",
    "WorkflowCell",
    "fingerprint",
    "parse_every",
    "promote_notebook",
    "read_notebook",
]
