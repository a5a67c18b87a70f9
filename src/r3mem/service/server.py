"""`serve(settings)`: run the API under uvicorn, one process, one model."""

from __future__ import annotations

import ipaddress
import sys

from r3mem.service.app import create_app
from r3mem.service.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: warn


def serve(settings: Settings) -> None:
    """Serve until interrupted. One worker process: the model is loaded once and shared."""
    import uvicorn

    if not is_loopback(settings.host):
        print(f"r3mem: listening on {settings.host}: reachable from other machines; "
              "every route still needs an API key", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                server_header=False, log_level="info")
