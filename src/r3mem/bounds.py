"""Per-request bounds on model work: a token budget and a deadline, carried in a context variable.

Why a context variable: the cost of a recall is known only step by step (which hits are
memory-only, how long their segments are), deep inside the store and the model. The caller
that owns the policy (the service's model worker) opens `within(...)` around one request;
the code that is about to spend (a reconstruction, a decoding step) calls `charge` or
`check_deadline`, which do nothing when no bounds are open, as in the library and the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from r3mem.errors import CostTooHigh, DeadlineExceeded


@dataclass
class Bounds:
    """At most `max_tokens` token-passes (tokens read or generated x beams x candidates), and
    nothing started after `deadline` (time.monotonic()); None: unbounded. `on_step` runs between
    decoding steps (the service's worker runs waiting cheap calls there)."""

    max_tokens: int | None = None
    deadline: float | None = None
    spent: int = field(default=0)
    on_step: Callable[[], None] | None = None


_current: ContextVar[Bounds | None] = ContextVar("r3mem_bounds", default=None)


@contextmanager
def within(bounds: Bounds) -> Iterator[Bounds]:
    token = _current.set(bounds)
    try:
        yield bounds
    finally:
        _current.reset(token)


def active() -> bool:
    """Whether bounds are open: a caller may skip measuring a cost nobody checks."""
    return _current.get() is not None


def charge(tokens: int, what: str) -> None:
    """Count `tokens` token-passes of `what` before doing them; CostTooHigh past the cap."""
    bounds = _current.get()
    if bounds is None:
        return
    check_deadline()
    bounds.spent += tokens
    if bounds.max_tokens is not None and bounds.spent > bounds.max_tokens:
        raise CostTooHigh(f"this request would cost more than max_request_tokens={bounds.max_tokens} token-passes "
                          f"(tokens x beams x candidates; {what} alone is {tokens}): ask for fewer beams, samples "
                          "or hits, or send a shorter text")


def check_deadline() -> None:
    bounds = _current.get()
    if bounds is not None and bounds.deadline is not None and time.monotonic() > bounds.deadline:
        raise DeadlineExceeded("the request ran past its deadline (request_timeout) and was stopped; retry later")


def step(resume: Callable[[], None] | None = None) -> None:
    """A point between units of model work (decoding steps, scoring batches): stop here past the
    deadline, else run `on_step`, then `resume` (which restores what the interrupted work needs,
    such as its adapter)."""
    bounds = _current.get()
    if bounds is None:
        return
    check_deadline()
    if bounds.on_step is not None:
        bounds.on_step()
        if resume is not None:
            resume()


def deadline_processors() -> list:
    """Logits processors for `generate` that only stop it past the deadline: for generation under
    another adapter state (answers read with the adapters disabled), where running other calls
    between its steps could switch adapters under it."""
    bounds = _current.get()
    if bounds is None or bounds.deadline is None:
        return []
    from transformers import LogitsProcessor

    class StopAtDeadline(LogitsProcessor):
        def __call__(self, input_ids, scores):
            check_deadline()
            return scores

    return [StopAtDeadline()]


def step_processors(resume: Callable[[], None]) -> list:
    """Logits processors for `generate` that call `step(resume)` between its decoding steps; none
    are needed when no bounds are open."""
    bounds = _current.get()
    if bounds is None or (bounds.deadline is None and bounds.on_step is None):
        return []
    from transformers import LogitsProcessor

    class BetweenSteps(LogitsProcessor):
        def __call__(self, input_ids, scores):
            step(resume)
            return scores

    return [BetweenSteps()]
