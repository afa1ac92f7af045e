"""Make ``inflight-v1.sqlite``: runs left in flight by a killed worker, in record format 1.

It was made with dbosify as of commit 0aceed1 (the last before record format 2), from a checkout
of that commit on ``PYTHONPATH``::

    git archive 0aceed1 dbosify | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/golden/make_inflight.py

Today's dbosify writes format 2, so running it again now would not make the same file: it is a
record of the past, kept so every later dbosify is tested on it (``tests/_runtime/test_upgrade.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: imported as golden.inflight.

TARGET = HERE / "inflight-v1.sqlite"


async def leave_in_flight(db_file: Path) -> None:
    from dbosify.client import Client
    from dbosify.worker import Worker
    from golden import inflight

    client = await Client.connect(f"sqlite:///{db_file}")
    async with Worker(client, task_queue=inflight.TASK_QUEUE, workflows=inflight.WORKFLOWS,
                      activities=inflight.ACTIVITIES, identity=inflight.IDENTITY):
        for workflow_id, cls in inflight.RUNS:
            await client.start_workflow(cls.run, id=workflow_id,  # type: ignore[attr-defined]
                                        task_queue=inflight.TASK_QUEUE)
        await asyncio.sleep(2.0)  # Every run reaches its waiting point (generation, not a test).
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    if len(sys.argv) == 2:
        asyncio.run(leave_in_flight(Path(sys.argv[1])))
        return
    from golden.make_golden import compact

    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "inflight.sqlite"
        child = subprocess.run([sys.executable, __file__, str(db_file)], check=False)
        assert child.returncode == -signal.SIGKILL, child.returncode
        time.sleep(0.1)
        TARGET.unlink(missing_ok=True)
        compact(db_file, TARGET)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
