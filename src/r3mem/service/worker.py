"""`ModelWorker`: the one thread on which the shared model runs, interactive calls first.

A PyTorch model is not safe to call from several threads at once (and on one device
concurrent calls only compete), so every request that touches the model (add, recall, ask,
update of text) is queued here and run on a single thread. Requests that only read or write
rows run on the server's thread pool and never wait behind the model.

One thread need not mean one request at a time in arrival order, which made throughput flat
in the number of clients (docs/reliability.md, *Throughput*):

- Interactive calls run first, in arrival order; `background` work (writing deferred memories,
  one small chunk a call) runs once no call has waited for `idle_after` seconds, and one chunk
  every `starve_after` seconds under sustained load: under load memory writes lag (the text and
  index rows are written at once, so nothing acknowledged is lost), and catch up when it ends.
- The texts of the calls waiting together (recall queries, added turns) are embedded in one
  batch (`prefetch`) before the first of them runs: one MiniLM pass over several costs about one.
  A call whose texts an earlier batch embedded runs without embedding anything, so the next batch
  waits until a call that needs it comes up, and holds everything that arrived meanwhile: under
  steady load each batch carries about as many texts as calls ran since the last one, instead of
  the one or two that arrived during the last call.
- Every call runs within `r3mem.bounds`: at most `max_tokens` token-passes, and a deadline
  `timeout` seconds after it was queued. A call whose deadline passed while it waited is not
  started; a running one stops between decoding steps (503 and Retry-After to its client).
- A dear call (an expansion, query-likelihood scoring, a long compression) lets `light` calls
  (a recall by a non-model method, an add whose memory is deferred) run between its steps, for
  up to `yield_for` seconds a step, so one tenant's dear request delays another's cheap one by
  about one step at a time, not by its whole length.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from r3mem.bounds import Bounds, check_deadline, within
from r3mem.service.errors import ServiceBusy

T = TypeVar("T")
log = logging.getLogger("r3mem.service")


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    bounds: Bounds
    embed: tuple[str, ...] = ()  # texts embedded ahead, with the other waiting calls' (queries, turns)
    light: bool = False  # may run between another call's decoding steps
    primed: bool = False  # its texts went into a batch already
    future: Future = field(default_factory=Future)


class ModelWorker:
    """A scheduler for model calls on one thread, at most `max_pending` waiting or running at once."""

    def __init__(self, max_pending: int = 64, *, background: Callable[[], bool] | None = None,
                 prefetch: Callable[[list[str]], None] | None = None, timeout: float | None = None,
                 max_tokens: int | None = None, idle_after: float = 0.02, starve_after: float = 2.0,
                 yield_for: float = 1.0) -> None:
        self.max_pending, self.timeout, self.max_tokens = max_pending, timeout, max_tokens
        self.background, self.prefetch = background, prefetch
        self.idle_after, self.starve_after, self.yield_for = idle_after, starve_after, yield_for
        self._last_call = time.monotonic()
        self._queue: deque[_Call] = deque()
        self._running = 0
        self._cond = threading.Condition()
        self._closed = False
        self._background_due = background is not None  # pending memories left by an earlier run
        self._wakes = 0
        self._last_background = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="r3mem-model", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._running

    def wait_idle(self, timeout: float = 60) -> bool:
        """Wait until no call waits or runs and no background work is due (tests, shutdown); whether it is."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._cond:
                if not self._queue and not self._running and not self._background_due:
                    return True
            time.sleep(0.01)
        return False

    def wake_background(self) -> None:
        """Say that background work may be waiting (an add deferred a memory)."""
        with self._cond:
            self._background_due, self._wakes = self.background is not None, self._wakes + 1
            self._cond.notify()

    def submit(self, fn: Callable[..., T], /, *args, embed: tuple[str, ...] = (), light: bool = False,
               bounded: bool = True, **kwargs) -> Future:
        """Queue `fn(*args, **kwargs)`; `bounded=False` frees it of deadline and cost cap (the model load)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the model worker is shut down")
            if len(self._queue) + self._running >= self.max_pending:
                raise ServiceBusy(f"{len(self._queue) + self._running} model calls are already queued; retry shortly")
            deadline = None if self.timeout is None or not bounded else time.monotonic() + self.timeout
            call = _Call(fn, args, kwargs, Bounds(self.max_tokens if bounded else None, deadline), embed, light)
            self._queue.append(call)
            self._cond.notify()
        return call.future

    async def run(self, fn: Callable[..., T], /, *args, embed: tuple[str, ...] = (), light: bool = False,
                  bounded: bool = True, **kwargs) -> T:
        """Run `fn(*args, **kwargs)` on the model thread and await its result (or its error).

        A client that disconnects cancels only its wait: a started call still finishes, so a
        write is never left half done."""
        return await asyncio.wrap_future(self.submit(fn, *args, embed=embed, light=light, bounded=bounded,
                                                     **kwargs))

    def close(self) -> None:
        """Finish the running call, cancel the queued ones, and stop the thread."""
        with self._cond:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            self._cond.notify()
        for call in queued:
            call.future.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    # -- the model thread ---------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    idle = time.monotonic() - self._last_call
                    if self._background_due and idle >= self.idle_after:
                        break
                    self._cond.wait(self.idle_after - idle if self._background_due else None)
                if self._closed:
                    return
                starving = self._background_due and time.monotonic() - self._last_background > self.starve_after
                call = self._queue.popleft() if self._queue and not starving else None
                if call is not None:
                    self._running = 1
                    texts = [] if call.primed else self._take_texts([call, *self._queue])
            if call is None:
                self._background_step()
                continue
            try:
                self._prefetch(texts)
                self._execute(call)
            finally:
                with self._cond:
                    self._running, self._last_call = 0, time.monotonic()

    @staticmethod
    def _take_texts(calls: list[_Call]) -> list[str]:
        """The texts of the calls not yet primed, which are then marked primed (under the lock)."""
        texts: list[str] = []
        for c in calls:
            if not c.primed:
                texts.extend(c.embed)
                c.primed = True
        return texts

    def _prefetch(self, texts: list[str]) -> None:
        if self.prefetch is not None and texts:
            try:
                self.prefetch(texts)
            except Exception:  # each recall then embeds its own query, and reports its own error
                log.exception("batched query embedding failed")

    def _execute(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        call.bounds.on_step = self._between_steps if not call.light else None
        try:
            with within(call.bounds):
                check_deadline()  # it may have passed while the call waited
                result = call.fn(*call.args, **call.kwargs)
        except BaseException as exc:
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)

    def _between_steps(self) -> None:
        """Run the light calls waiting (called from a step of a dear call), and those that arrive
        meanwhile, for up to `yield_for` seconds: the dear call then takes its next step, so it
        advances (and meets its deadline) however steady the cheap traffic, at a small share."""
        end = time.monotonic() + self.yield_for
        while True:
            with self._cond:
                light = [c for c in self._queue if c.light]
                for call in light:
                    self._queue.remove(call)
                texts = self._take_texts(light)
            if not light:
                return
            self._prefetch(texts)
            for call in light:
                self._execute(call)
            if time.monotonic() >= end:
                return

    def _background_step(self) -> None:
        with self._cond:
            wakes = self._wakes
        try:
            more = bool(self.background()) if self.background is not None else False
        except Exception:  # e.g. the store is down: the next add wakes it again
            log.exception("background memory writing failed")
            more = False
        with self._cond:
            self._last_background = time.monotonic()
            self._background_due = more or self._wakes != wakes
