"""`ModelWorker`: the one thread on which the shared model runs.

A PyTorch model is not safe to call from several threads at once (and on one device
concurrent calls only compete), so every request that touches the model (add, recall,
ask, update of text) is queued here and run in arrival order on a single thread.
Requests that only read or write rows run on the server's thread pool and never wait
behind the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from r3mem.service.errors import ServiceBusy

T = TypeVar("T")


class ModelWorker:
    """A FIFO of model calls, at most `max_pending` waiting or running at once."""

    def __init__(self, max_pending: int = 64) -> None:
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="r3mem-model")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def _release(self, _future: Future | None = None) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        """Run `fn(*args, **kwargs)` on the model thread and await its result (or its error)."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise ServiceBusy(f"{self._pending} model calls are already queued; retry shortly")
            self._pending += 1
        try:
            future = self._executor.submit(fn, *args, **kwargs)
        except BaseException:
            self._release()  # shut down: nothing was queued
            raise
        future.add_done_callback(self._release)
        # A client that disconnects cancels only its wait: a started call still finishes,
        # so a write is never left half done.
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Finish the running call, drop the queued ones, and stop the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
