"""`r3mem_home()`: where r3mem keeps caches and stores, in a module light enough for the CLI to import."""

from __future__ import annotations

import os
from pathlib import Path


def r3mem_home() -> Path:
    """Where r3mem keeps caches and stores: `$R3MEM_HOME`, default `~/.cache/r3mem`."""
    return Path(os.environ.get("R3MEM_HOME") or Path.home() / ".cache" / "r3mem")
