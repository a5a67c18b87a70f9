"""`serve(settings)`: run the API under uvicorn, one process, one model."""

from __future__ import annotations

import ipaddress
import sys

from r3mem.service.app import create_app, open_store
from r3mem.service.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: warn


def serve(settings: Settings, preload: bool = False) -> None:
    """Serve until interrupted. One worker process: the model is loaded once and shared.

    With `preload`, the store is opened and the model loaded before uvicorn starts, so a bad
    store, model or checkpoint raises its R3MemError here (the CLI's one line and exit code)
    rather than failing the app's startup with a traceback and uvicorn's exit status 3.
    """
    import uvicorn

    if not is_loopback(settings.host):
        print(f"r3mem: listening on {settings.host}: reachable from other machines; "
              "every route still needs an API key; put TLS in front of it (docs/deployment.md)", file=sys.stderr)
    store = None
    if preload:
        store = open_store(settings)
        store.encoder  # noqa: B018 -- loads the model now
    try:
        uvicorn.run(create_app(settings, store=store), host=settings.host, port=settings.port, workers=1,
                    server_header=False, log_level="info")
    finally:
        if store is not None:
            store.close()
