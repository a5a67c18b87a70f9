"""Where the store lives: `$R3MEM_HOME/store.sqlite3` by default, or any URL given."""

from __future__ import annotations

import os
from pathlib import Path

from r3mem.errors import InvalidInput
from r3mem.home import r3mem_home
from r3mem.store.backend import StoreBackend


def default_store_url() -> str:
    """`$R3MEM_STORE`, else an SQLite file under `$R3MEM_HOME`."""
    return os.environ.get("R3MEM_STORE") or f"sqlite:///{r3mem_home() / 'store.sqlite3'}"


def open_backend(url: str | None = None) -> StoreBackend:
    """`sqlite:///path`, a bare file path, or `postgresql://user@host:port/db`."""
    url = url or default_store_url()
    if url.startswith(("postgresql://", "postgres://")):
        from r3mem.store.postgres import PostgresBackend  # psycopg only when asked for

        return PostgresBackend(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    elif "://" in url:
        raise InvalidInput(f"unknown store URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    from r3mem.store.sqlite import SQLiteBackend

    return SQLiteBackend(Path(url).expanduser())
