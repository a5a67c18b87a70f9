"""PostgreSQL backend (psycopg 3): one store shared by several service replicas.

Each thread keeps one connection; a broken one (server restarted) is dropped and the
next call reconnects, while the failed call reports StoreError and changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from r3mem.errors import StoreError
from r3mem.store.forget import TABLES
from r3mem.store.lexical import (
    POSTGRES_DDL,
    POSTGRES_MATCHES,
    POSTGRES_SEARCH,
    POSTGRES_SEARCH_PAIRS,
    POSTGRES_SEARCH_SCOPED,
    POSTGRES_SEARCH_TOP,
    websearch_text,
)
from r3mem.store.sql import Query, SQLBackend, schema

_CONNECT_TIMEOUT_S = 10
_SCHEMA_LOCK = 7_370_221  # advisory lock id: replicas starting together create the schema once


class PostgresBackend(SQLBackend):
    _search_sql = POSTGRES_SEARCH
    _search_pairs_sql = POSTGRES_SEARCH_PAIRS
    _search_scoped_sql = POSTGRES_SEARCH_SCOPED
    _search_top_sql = POSTGRES_SEARCH_TOP
    _matches_sql = POSTGRES_MATCHES

    def __init__(self, url: str) -> None:
        super().__init__(url)
        with self._tx(write=True) as q:
            q(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            for statement in schema(blob="BYTEA", serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY") \
                    + POSTGRES_DDL:
                q(statement)
            self._migrate_index(q)

    def _match(self, words: list[str]) -> str:
        return websearch_text(words)

    def _metadata_equals(self, column: str, key: str) -> tuple[str, str]:
        # jsonb equality: 1 = 1.0, key order irrelevant; the metadata column is JSON text
        return f"({column}::jsonb -> ?) = ?::jsonb", key

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to {self.redacted_url}: {first}") from exc

    @contextmanager
    def _transaction(self, conn: psycopg.Connection, write: bool) -> Iterator[Query]:
        # autocommit connection: this block is the one and only transaction boundary
        with conn.transaction():
            yield lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)

    def _compact(self) -> None:
        """Rewrite the store's tables (and their indexes and TOAST) without dead tuples. `VACUUM FULL`
        locks each table while it runs, so other replicas wait (seconds at 100k records)."""
        try:
            for table in TABLES:  # autocommit connection: VACUUM may not run inside a transaction
                self._connection().execute(f"VACUUM FULL {table}")
        except psycopg.Error as exc:
            self._drop_connection()
            raise StoreError(f"store {self.redacted_url}: the forgotten rows are deleted, but VACUUM FULL failed "
                             f"({exc}), so their bytes may remain in dead tuples until it succeeds (forget again "
                             "to retry)") from exc
