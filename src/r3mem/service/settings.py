"""`Settings`: everything `create_app` and `serve` need, fixed before the app starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from r3mem.errors import InvalidInput

if TYPE_CHECKING:
    from r3mem.api import R3Mem


@dataclass(frozen=True)
class Settings:
    """Where the store is, where to listen, how much to accept, and which model to load."""

    store_url: str | None = None  # None: $R3MEM_STORE, else SQLite under $R3MEM_HOME, as for the CLI
    host: str = "127.0.0.1"  # loopback: nothing off this machine reaches the service unless asked to
    port: int = 8765
    # A JSON body: room for one add's longest text (200,000 characters) in mostly-ASCII JSON.
    max_request_bytes: int = 1 << 20
    # An uploaded export archive: gzip of base64 tensors, far larger than any JSON request.
    max_import_bytes: int = 64 << 20
    # Model calls waiting for the model thread; beyond this a request gets 503 at once, so a burst
    # cannot queue unbounded work (and memory) behind one model.
    max_pending: int = 64
    # Model work one request may ask for, in token-passes (tokens read or generated x beams x
    # candidates): 32,768 reads back about 2,000 tokens of memory-only records at the default 16
    # beams; over it is 413 before any of it runs (r3mem.bounds, docs/reliability.md).
    max_request_tokens: int = 32_768
    # Seconds from queueing to answer; past it a model call is stopped between decoding steps (503).
    request_timeout: float = 30.0
    # Records in one imported archive: ten times the largest store the recall benchmarks measure.
    max_import_records: int = 1_000_000
    # Per API key, every window at once (`limits` syntax; a daily window is a quota). A client
    # loop or a leaked key then cannot crowd out other keys' cheap requests; model calls are
    # also bounded by `max_pending`. None: no limit. See docs/deployment.md.
    rate_limit: str | None = "100/second;3000/minute"
    rate_limit_storage: str = "memory://"  # per process; a redis:// URL shares counts between replicas
    model: str | None = None  # base model: a local directory or a locally cached id (None: the default)
    checkpoint: str | None = None  # None: the shipped checkpoint when it matches the base model
    device: str | None = None  # None: cuda if present, else cpu
    ratio: float = 4  # compression ratio of new records: the store's default
    # Builds the model instead of `R3Mem.load(model, checkpoint, device)`: for embedders and tests.
    model_factory: Callable[[], R3Mem] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidInput(f"port must be an integer from 0 to 65535, got {self.port!r}")
        for name in ("max_request_bytes", "max_import_bytes", "max_pending", "max_import_records",
                     "max_request_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.request_timeout, bool) or not isinstance(self.request_timeout, int | float) \
                or not self.request_timeout > 0:
            raise InvalidInput(f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}")
        if not self.host or not isinstance(self.host, str):
            raise InvalidInput(f"host must be a host name or address, got {self.host!r}")
        if not self.ratio > 0:
            raise InvalidInput(f"ratio must be positive, got {self.ratio!r}")
        from r3mem.service.ratelimit import parse  # the limits library, only when a service is configured

        parse(self.rate_limit)

    def load_model(self) -> R3Mem:
        if self.model_factory is not None:
            return self.model_factory()
        from r3mem.api import R3Mem

        return R3Mem.load(model=self.model, checkpoint=self.checkpoint, device=self.device)
