"""Make the golden histories and stored records (DESIGN §9.1): ``python tests/golden/make_golden.py``.

Runs the workflows of ``workflows.py`` on a fresh SQLite database, saves each run's Temporal history
as ``<workflow id>.json`` and the database itself as ``golden.sqlite``, here. Re-run it only when a
change of the stored format is intended: the golden tests exist to notice such changes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the workflows are imported as golden.workflows.

from dbosify._runtime._process import close_current  # noqa: E402
from dbosify.client import Client  # noqa: E402
from dbosify.worker import Worker  # noqa: E402
from golden.workflows import ACTIVITIES, RUNS, TASK_QUEUE, WORKFLOWS  # noqa: E402


async def make(db_file: Path) -> None:
    client = await Client.connect(f"sqlite:///{db_file}")
    async with Worker(client, task_queue=TASK_QUEUE, workflows=WORKFLOWS, activities=ACTIVITIES):
        for workflow_id, cls, arg, expected in RUNS:
            handle = await client.start_workflow(cls.run, arg, id=workflow_id,  # type: ignore[attr-defined]
                                                 task_queue=TASK_QUEUE)
            result = await handle.result()
            if result != expected:
                raise SystemExit(f"{workflow_id}: expected {expected!r}, got {result!r}")
            history = await handle.fetch_history()
            (HERE / f"{workflow_id}.json").write_text(history.to_json() + "\n")
            print(f"{workflow_id}: {len(history.events)} events")
    close_current()


def compact(db_file: Path, target: Path) -> None:
    """One self-contained, small file: a consistent copy (WAL included), rollback journal,
    vacuumed."""
    source = sqlite3.connect(db_file)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("VACUUM")
    finally:
        copy.close()
        source.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "golden.sqlite"
        asyncio.run(make(db_file))
        target = HERE / "golden.sqlite"
        target.unlink(missing_ok=True)
        compact(db_file, target)
    print(f"wrote {HERE / 'golden.sqlite'} ({(HERE / 'golden.sqlite').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
