"""The notebook's background event loop: where the in-process worker runs, beside the kernel.

A notebook cell that waits (``%workflow result``) blocks the kernel's thread, and in Jupyter that
thread also runs the kernel's asyncio loop (DESIGN §10): anything the worker did on that loop
would stall with it. So the worker, and every coroutine the notebook layer runs for a cell, lives
on a loop of its own in a daemon thread, in every frontend alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running forever in a daemon thread.

    >>> loop = BackgroundLoop()
    >>> loop.run(asyncio.sleep(0, result=3))
    3
    >>> loop.stop()
    """

    def __init__(self, name: str = "dbosify-notebook") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def alive(self) -> bool:
        """Whether the loop still runs."""
        return self._thread.is_alive() and not self.loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns at once."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result from any other thread.

        An interrupt (Ctrl-C, or the kernel's interrupt button) while waiting cancels ``coro``
        and re-raises: it stops the wait (``handle.result()``), never a run, which lives in the
        database. A ``timeout`` that passes cancels ``coro`` and raises ``TimeoutError``.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundLoop.run called from its own loop; await the "
                               "coroutine instead")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no answer within {timeout} s") from None
        except BaseException:
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, then stop it and its thread."""
        if not self.alive:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(cancel_all()).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


_background: BackgroundLoop | None = None
_background_lock = threading.Lock()


def background_loop() -> BackgroundLoop:
    """The process's notebook loop, started on first use (and again if it was stopped)."""
    global _background
    with _background_lock:
        if _background is None or not _background.alive:
            _background = BackgroundLoop()
        return _background


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the notebook's background loop and return its result (see
    :meth:`BackgroundLoop.run`). Usable from a cell, a magic, a widget callback or plain code.
    """
    return background_loop().run(coro, timeout)
