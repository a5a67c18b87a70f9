"""Per-key rate limits and quotas, with the `limits` library, checked once a request's key is known.

`Settings.rate_limit` is a `limits` string such as "20/second;600/minute;20000/day": every
window applies to each API key on its own (a daily window is a quota), counted over a moving
window. Counters live in the process (`memory://`) unless `Settings.rate_limit_storage` names
a shared store (e.g. `redis://host`, which needs the `redis` package), as replicas need.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from r3mem.errors import InvalidInput
from r3mem.service.errors import RateLimited

_NAMESPACE = "r3mem-key"


def parse(spec: str | None) -> list[RateLimitItem]:
    """The windows of `spec` (None or "": no limit); InvalidInput names the setting."""
    if not spec:
        return []
    try:
        return parse_many(spec)
    except ValueError as exc:
        raise InvalidInput(f"rate_limit {spec!r} is not a limits string such as '20/second;600/minute': "
                           f"{exc}") from exc


class KeyLimiter:
    """Counts each key's requests against every window; `hit` raises RateLimited when one is full."""

    def __init__(self, spec: str | None, storage: str = "memory://") -> None:
        self.items = parse(spec)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage)) if self.items else None

    def hit(self, key_hash: str) -> None:
        if self.limiter is None:
            return
        for item in self.items:
            if not self.limiter.hit(item, _NAMESPACE, key_hash):
                reset = self.limiter.get_window_stats(item, _NAMESPACE, key_hash).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise RateLimited(f"this API key is over its limit of {item}; retry in {wait} s", wait)
