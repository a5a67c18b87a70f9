"""The HTTP API over the memory store: `create_app(settings)`, `serve(settings)`, API keys.

Names resolve lazily (PEP 562), as in `r3mem`: importing this package loads neither
FastAPI nor a model.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Settings": "r3mem.service.settings",
    "create_app": "r3mem.service.app",
    "serve": "r3mem.service.server",
    "create_api_key": "r3mem.service.keys",
    "authenticate": "r3mem.service.keys",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
