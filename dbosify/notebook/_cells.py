"""The saved versions of a notebook's ``%%workflow`` cells (DESIGN §6).

A cell's source is imported as a module of its own (:mod:`dbosify._cells`), and stored in the
database with its content hash, which is its version: the build id its worker serves, so a run
stays on the code it started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

# The cell-module machinery lives below the notebook layer (promotion shares it).
from dbosify import _cells
from dbosify._cells import CellModule, cell_version
from dbosify._store import _tables as t
from dbosify._store._base import RUNNING, now_ms
from dbosify._store._store import Store
from dbosify.notebook._config import NotebookUsageError

__all__ = ["CellModule", "SavedCell", "cell_version", "import_cell", "latest_versions",
           "running_versions", "runs_in_flight", "save_cell", "saved_cells"]

def import_cell(source: str, task_queue: str, version: str | None = None) -> CellModule:
    """:func:`dbosify._cells.import_cell`, with a cell that cannot serve reported as the
    notebook's usage mistake."""
    try:
        return _cells.import_cell(source, task_queue, version)
    except _cells.CellError as err:
        raise NotebookUsageError(str(err)) from None


@dataclass(frozen=True)
class SavedCell:
    """A stored version of a cell."""

    version: str
    task_queue: str
    source: str
    names: list[str]
    updated_ms: int


def save_cell(store: Store, notebook: str, cell: CellModule) -> None:
    """Store a cell version (or mark it the newest again, when it ran before)."""
    c = t.notebook_cells
    with store.engine.begin() as conn:
        updated = conn.execute(sa.update(c).where(c.c.notebook == notebook,
                                                  c.c.version == cell.version)
                               .values(updated_ms=now_ms())).rowcount
        if not updated:
            conn.execute(sa.insert(c).values(
                notebook=notebook, version=cell.version, task_queue=cell.task_queue,
                source=cell.source, names=json.dumps(cell.names), updated_ms=now_ms()))


def saved_cells(store: Store, notebook: str) -> list[SavedCell]:
    """The cell versions a notebook saved, oldest first."""
    c = t.notebook_cells
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c).where(c.c.notebook == notebook)
                            .order_by(c.c.updated_ms, c.c.version)).all()
    return [SavedCell(r.version, r.task_queue, r.source, json.loads(r.names), r.updated_ms)
            for r in rows]


def latest_versions(cells: list[SavedCell]) -> dict[str, SavedCell]:
    """For each name, the newest saved version that defines it."""
    latest: dict[str, SavedCell] = {}
    for cell in cells:  # Oldest first: newer ones overwrite.
        for name in cell.names:
            latest[name] = cell
    return latest


def running_versions(store: Store, versions: list[str]) -> dict[str, int]:
    """How many running runs are pinned to each of these versions."""
    if not versions:
        return {}
    r = t.runs
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(r.c.build_id, sa.func.count())
                            .where(r.c.status == RUNNING, r.c.build_id.in_(versions))
                            .group_by(r.c.build_id)).all()
    return {row[0]: int(row[1]) for row in rows}


def runs_in_flight(store: Store, task_queues: list[str], limit: int = 20) -> list[Any]:
    """Running runs of these task queues, newest first."""
    if not task_queues:
        return []
    r = t.runs
    with store.engine.connect() as conn:
        return list(conn.execute(
            sa.select(r.c.workflow_id, r.c.run_id, r.c.workflow_type, r.c.task_queue,
                      r.c.build_id, r.c.start_time_ms)
            .where(r.c.status == RUNNING, r.c.task_queue.in_(task_queues))
            .order_by(r.c.start_time_ms.desc()).limit(limit)).all())
