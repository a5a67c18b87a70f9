"""r3mem: learned, compressed, reversible memory for language models (R³Mem).

Importing r3mem loads nothing: names resolve lazily (PEP 562), so `r3mem.errors`
or the text tools import without torch, and models load only in `R3Mem.load()`.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "R3Mem": "r3mem.api",
    "MemoryConfig": "r3mem.config",
    "Decoding": "r3mem.decode.options",
    "Memory": "r3mem.memory_file",
    "R3MemError": "r3mem.errors",
    "InvalidInput": "r3mem.errors",
    "ModelNotFound": "r3mem.errors",
    "CheckpointError": "r3mem.errors",
    "CheckpointMismatch": "r3mem.errors",
    "CorruptRecord": "r3mem.errors",
    "MemoryFileError": "r3mem.errors",
    "RecordNotFound": "r3mem.errors",
    "StoreError": "r3mem.errors",
    "AccessDenied": "r3mem.errors",
    "MemoryStore": "r3mem.store",
    "Namespace": "r3mem.store",
    "RecallFilter": "r3mem.store",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'r3mem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
