"""`create_app(settings)`: the HTTP API as an app factory; nothing happens at import.

The lifespan opens the store and loads the model once, on the model thread, before the
first request; every request then shares that one instance through the `ModelWorker`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from r3mem import __version__
from r3mem.service import errors
from r3mem.service.limits import BodyLimit
from r3mem.service.media import JSONBodies
from r3mem.service.ratelimit import KeyLimiter
from r3mem.service.routes import health, router
from r3mem.service.settings import Settings
from r3mem.service.worker import ModelWorker
from r3mem.store import MemoryStore

IMPORT_PATH = "/v1/import"
DESCRIPTION = """Persistent, namespaced, compressed memory for language models.

Every `/v1` route needs an API key (`r3mem key create`), sent as `Authorization: Bearer <key>`
or `X-API-Key: <key>`. A key may touch only the namespaces inside its scope: another
namespace is 403, and a record id outside the request's namespace is 404, as for a missing id.
Every error has the body `{"error": "<one line>"}`.
"""


def open_store(settings: Settings) -> MemoryStore:
    """The store `settings` name, with the model it loads (lazily, on first use)."""
    return MemoryStore.open(settings.store_url, model=settings.load_model, ratio=settings.ratio)


def background_flush(store: MemoryStore, chunk: int = 2) -> bool:
    """Write one small chunk of pending memories; whether more may remain. Two chat-turn records
    are one padded forward pass of a fraction of a second on a CPU: short enough to sit between
    interactive calls."""
    return store.flush_some(chunk) >= chunk


def create_app(settings: Settings | None = None, store: MemoryStore | None = None) -> FastAPI:
    """The app; with `store`, it serves that store (and leaves closing it to the caller)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        memory_store = store if store is not None else await run_in_threadpool(open_store, settings)
        # deferred memories are written by the worker between requests, not inside the add that
        # crossed the batch size (which made every request queued behind it wait seconds)
        auto_flush, memory_store.auto_flush = memory_store.auto_flush, False
        worker = ModelWorker(settings.max_pending, background=lambda: background_flush(memory_store),
                             prefetch=memory_store.dense.prime, timeout=settings.request_timeout,
                             max_tokens=settings.max_request_tokens)
        try:
            # Load the model now (a bad model fails the start, not the first request), and on
            # the thread that will run it.
            await worker.run(lambda: memory_store.encoder, bounded=False)
            app.state.store, app.state.worker = memory_store, worker
            yield
        finally:
            worker.close()
            memory_store.auto_flush = auto_flush
            if store is None:
                memory_store.close()

    app = FastAPI(title="r3mem", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.limiter = KeyLimiter(settings.rate_limit, settings.rate_limit_storage)
    errors.install(app)
    app.add_middleware(JSONBodies, exempt=frozenset({IMPORT_PATH}))
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes,
                       larger={IMPORT_PATH: settings.max_import_bytes})
    app.include_router(health)
    app.include_router(router)
    return app
