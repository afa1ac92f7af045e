"""How a process learns that something happened: waiters, and notifications across processes.

In-process, closes, update progress and query answers wake their waiters directly. Across
processes, Postgres ``NOTIFY`` (one listener thread per process) wakes them; on SQLite, which
has no push, the waiting side polls. Queries for a run driven by another process are asked
through ``dbosify_queries`` and answered by that process from its live state.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.bridge.proto.workflow_commands import WorkflowCommand

if TYPE_CHECKING:
    from dbosify._runtime._driver import RunDriver
    from dbosify._store._database import DatabaseURL
    from dbosify._store._store import Store

logger = logging.getLogger("dbosify")
T = TypeVar("T")

_UNANSWERED = "dbosify:unanswered"
_RECENT_CLOSES = 1024
_ACCEPTED = 2  # UpdateWorkflowExecutionLifecycleStage
_COMPLETED = 3


def _set_if_pending(future: asyncio.Future[bytes], value: bytes) -> None:
    if not future.done():
        future.set_result(value)


class ProcessMessaging:
    """Waiters and cross-process notifications of a :class:`~dbosify._runtime._process.Process`
    (a mixin: the process owns the state declared here)."""

    db: DatabaseURL
    store: Store
    executor_id: str
    poll_interval: float
    loop: asyncio.AbstractEventLoop | None
    drivers: dict[str, RunDriver]
    _close_waiters: dict[str, list[asyncio.Future[bytes]]]
    closing_here: set[str]
    _recent_closes: OrderedDict[str, bytes]
    _update_waiters: dict[tuple[str, str], list[asyncio.Future[bytes]]]
    _answer_waiters: dict[int, asyncio.Future[bytes]]
    _answering: set[int]
    _listener: threading.Thread | None
    _listener_stop: threading.Event
    _queries_waiting: bool
    _cancels_waiting: bool

    if TYPE_CHECKING:  # Provided by Process.
        async def db_call(self, fn: Callable[..., T], *args: Any) -> T: ...
        def spawn(self, coro: Any) -> None: ...
        def wake_run(self, run_id: str) -> None: ...
        def wake_dispatch(self) -> None: ...

    def notify_closed(self, run_id: str, close_event: bytes) -> None:
        """Wake in-process waiters of a run's result."""
        if close_event:
            # Kept a little while: a waiter that registers just after the close still sees it.
            self._recent_closes[run_id] = close_event
            while len(self._recent_closes) > _RECENT_CLOSES:
                self._recent_closes.popitem(last=False)
        for future in self._close_waiters.pop(run_id, []):
            loop = future.get_loop()
            loop.call_soon_threadsafe(_set_if_pending, future, close_event)

    def wait_closed(self, run_id: str) -> asyncio.Future[bytes]:
        """A future resolved with the close event when this process closes the run."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        recent = self._recent_closes.get(run_id)
        if recent is not None:
            future.set_result(recent)
            return future
        self._close_waiters.setdefault(run_id, []).append(future)
        return future

    def forget_waiter(self, run_id: str, future: asyncio.Future[bytes]) -> None:
        waiters = self._close_waiters.get(run_id)
        if waiters and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._close_waiters[run_id]

    async def record_update_response(self, run_id: str, response: Any) -> None:
        """Store an update's progress (accepted, rejected, completed) and wake its waiters."""
        from temporalio.api.update.v1 import Outcome

        outcome: bytes | None = None
        if response.HasField("accepted"):
            stage = _ACCEPTED
        else:
            stage = _COMPLETED
            result = Outcome()
            if response.HasField("rejected"):
                result.failure.CopyFrom(response.rejected)
            else:
                result.success.payloads.append(response.completed)
            outcome = result.SerializeToString()
        await self.db_call(self.store.put_update, run_id, response.protocol_instance_id, stage,
                           outcome)
        self.notify_update(run_id, response.protocol_instance_id)

    def notify_update(self, run_id: str, update_id: str) -> None:
        """Wake in-process waiters of an update."""
        for future in self._update_waiters.pop((run_id, update_id), []):
            future.get_loop().call_soon_threadsafe(_set_if_pending, future, b"")

    def wait_update(self, run_id: str, update_id: str) -> asyncio.Future[bytes]:
        """A future resolved when this process records progress of the update."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._update_waiters.setdefault((run_id, update_id), []).append(future)
        return future

    def forget_update_waiter(self, run_id: str, update_id: str,
                             future: asyncio.Future[bytes]) -> None:
        waiters = self._update_waiters.get((run_id, update_id))
        if waiters and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._update_waiters[(run_id, update_id)]

    async def _answer_queries(self) -> None:
        for query_id, run_id, job_bytes in await self.db_call(self.store.open_queries,
                                                              self.executor_id):
            if query_id not in self._answering:
                self._answering.add(query_id)
                self.spawn(self._answer_query(query_id, run_id, job_bytes))

    async def _answer_query(self, query_id: int, run_id: str, job_bytes: bytes) -> None:
        from temporalio.bridge.proto.workflow_activation import WorkflowActivationJob

        job = WorkflowActivationJob()
        job.ParseFromString(job_bytes)
        driver = self.drivers.get(run_id)
        try:
            if driver is not None:
                command = await driver.query(job)
            elif self.replay_answerer is not None:
                # A run not driven here (closed, say) is answered from its records, by this
                # process because it has a worker of the run's task queue.
                command = await self.replay_answerer(run_id, job)
            else:
                raise LookupError("the run is no longer driven by this process")
        except LookupError as err:
            command = WorkflowCommand()
            command.respond_to_query.query_id = job.query_workflow.query_id
            command.respond_to_query.failed.message = f"query not answered: {err}"
            command.respond_to_query.failed.source = _UNANSWERED
        try:
            await self.db_call(self.store.answer_query, query_id, command.SerializeToString(),
                               run_id)
        finally:
            self._answering.discard(query_id)

    replay_answerer: Callable[[str, Any], Awaitable[WorkflowCommand]] | None = None
    """Answers a query from a run's records (set by the database service, which reads them):
    how a process with a worker of the run's task queue answers for a closed run."""

    async def ask_owner(self, run_id: str, owner: str, job: Any, seconds: float) -> Any:
        """Ask the process that drives a run to answer a query; None if it does not answer in
        ``seconds`` (it may have died: the caller then replays the history itself)."""
        self.ensure_listener()
        query_id = await self.db_call(self.store.ask_query, run_id, owner,
                                      job.SerializeToString())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while loop.time() < deadline:
                answer = await self.db_call(self.store.query_answer, query_id)
                if answer is not None:
                    command = WorkflowCommand()
                    command.ParseFromString(answer)
                    if command.respond_to_query.failed.source == _UNANSWERED:
                        return None
                    return command
                future = loop.create_future()
                self._answer_waiters[query_id] = future
                try:
                    await asyncio.wait_for(future, min(self.poll_interval,
                                                       max(deadline - loop.time(), 0.001)))
                except asyncio.TimeoutError:
                    pass
                finally:
                    self._answer_waiters.pop(query_id, None)
            return None
        finally:
            await self.db_call(self.store.query_answer, query_id, True)

    def ensure_listener(self) -> None:
        """Listen for Postgres notifications (wake-ups from other processes), if not yet."""
        if not self.store.is_postgres or self._listener is not None:
            return
        # An event per thread: a stopped listener that has not noticed yet is never revived.
        self._listener_stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, args=(self._listener_stop,),
                                          name="dbosify-listen", daemon=True)
        self._listener.start()

    def _stop_listener(self, join: bool = True) -> None:
        self._listener_stop.set()
        if self._listener is not None and join:
            self._listener.join(timeout=5)
        self._listener = None

    def _listen(self, stop: threading.Event) -> None:
        import psycopg

        while not stop.is_set():
            try:
                conninfo = self.db.url.replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute("LISTEN dbosify")
                    while not stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=64):
                            self._on_notify(note.payload)
            except Exception:
                logger.warning("dbosify notification listener lost its connection; "
                               "reconnecting", exc_info=True)
                stop.wait(1.0)

    def _on_notify(self, payload: str) -> None:
        kind, _, key = payload.partition(":")
        if kind == "inbox":
            self.wake_run(key)
        elif kind == "closed" and key not in self.closing_here:
            # Closed by another process: waiters here re-read the run. (A close made here
            # wakes them itself, with the close event.)
            self.notify_closed(key, b"")
        elif kind in ("run", "activity"):
            self.wake_dispatch()
        elif kind == "activity_cancel" and key == self.executor_id:
            self._cancels_waiting = True
            self.wake_dispatch()
        elif kind == "query" and key == self.executor_id:
            self._queries_waiting = True
            self.wake_dispatch()
        elif kind == "answer":
            future = self._answer_waiters.get(int(key))
            if future is not None:
                future.get_loop().call_soon_threadsafe(_set_if_pending, future, b"")
