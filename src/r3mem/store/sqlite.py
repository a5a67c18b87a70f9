"""Embedded SQLite backend: one file, WAL journal, every write one IMMEDIATE transaction.

`synchronous=FULL` makes a commit durable before it returns, so a record the store
acknowledged survives the process being killed (and the OS crashing) at any moment.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from r3mem.errors import StoreError
from r3mem.store.lexical import SQLITE_DDL, SQLITE_MATCHES, SQLITE_SEARCH, SQLITE_SEARCH_TOP, fts5_match
from r3mem.store.namespace import Namespace
from r3mem.store.reserve import Reserve
from r3mem.store.sql import Query, SQLBackend, schema

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 30_000  # concurrent writers queue on the file lock instead of failing


class SQLiteBackend(SQLBackend):
    _search_sql = SQLITE_SEARCH
    _search_top_sql = SQLITE_SEARCH_TOP
    _matches_sql = SQLITE_MATCHES

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"sqlite:///{self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {self.path.parent}: {exc.strerror}") from exc
        with self._tx(write=True) as q:
            for statement in schema(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT") + SQLITE_DDL:
                q(statement)
            self._migrate_index(q)
        self.reserve = Reserve(self.path.with_name(self.path.name + ".reserve"))
        self.reserve.ensure()

    # -- deletes free space even on a full disk (r3mem.store.reserve) --------------------
    def delete(self, record_id: str, namespace: Namespace) -> list[str]:
        return self._freeing(lambda: super(SQLiteBackend, self).delete(record_id, namespace))

    def delete_all(self, namespace: Namespace) -> int:
        return self._freeing(lambda: super(SQLiteBackend, self).delete_all(namespace))

    def _freeing(self, delete: Callable[[], T]) -> T:
        """Run `delete`; if the disk is too full to log it, give up the reserve and run it once more."""
        try:
            return delete()
        except StoreError as exc:
            if "full" not in str(exc):
                raise
        self.reserve.release()
        result = delete()
        self.reserve.ensure()
        return result

    def _match(self, words: list[str]) -> str:
        return fts5_match(words)

    def _metadata_equals(self, column: str, key: str) -> tuple[str, str]:
        # `->` gives the value's minified JSON text, compared with the filter value's JSON text
        return f"({column} -> ?) = ?", f'$."{key}"'

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: transactions are begun and ended here, explicitly
            # check_same_thread=False only so close() may close every thread's connection;
            # each thread still uses its own connection, never another's
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, write: bool) -> Iterator[Query]:
        # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn.execute
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)

    def _purge_index(self, q: Query) -> None:
        # FTS5 keeps a deleted row's terms in old segments, behind a tombstone, until they merge;
        # 'optimize' merges every segment into one, dropping both
        q("INSERT INTO record_fts (record_fts) VALUES ('optimize')")

    def _compact(self) -> None:
        """Rewrite the file without its free pages, then empty the WAL (which holds old page images)."""
        conn = self._connection()
        try:
            conn.execute("VACUUM")
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: the forgotten rows are deleted, but compacting the file failed "
                             f"({exc}), so their bytes may remain in it until a VACUUM succeeds (forget again "
                             "to retry)") from exc
        if busy:
            raise StoreError(f"store {self.path}: another connection kept the WAL from being emptied; "
                             "the forgotten rows are gone, but old copies may remain until the next checkpoint")
