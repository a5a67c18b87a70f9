"""Forgetting a namespace: every trace of its records gone from the database, not just the rows.

`delete_all` keeps an audit trail on purpose (a `delete` event per record, and an update's event
keeps the text it replaced). A request to be forgotten wants the opposite, so `forget` removes in
one transaction the records, their index rows (lexical body, dense vector) and every event of the
namespace, and on request the API keys scoped inside it; it writes no event of its own.

A deleted row's bytes can outlive the transaction: in free pages and the write-ahead log (SQLite),
in FTS5 segments until they merge, in dead tuples until a vacuum (PostgreSQL). So after the
commit each backend compacts (`_compact`): SQLite merges the FTS5 index, rewrites the file
(`VACUUM`) and truncates the WAL; PostgreSQL runs `VACUUM FULL` on the store's tables. What no
database command reaches (PostgreSQL's own WAL segments and base backups, file-system snapshots)
keeps the bytes until it is recycled: docs/store.md says so.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager

from r3mem.store.filters import where_sql
from r3mem.store.namespace import Namespace

TABLES = ("records", "record_index", "events", "api_keys")


class Forgetting:
    """Mixed into `SQLBackend`; a backend supplies `_compact`."""

    @abstractmethod
    def _tx(self, write: bool = False) -> AbstractContextManager: ...

    @abstractmethod
    def _compact(self) -> None:
        """Make deleted rows unrecoverable from the database's files (outside any transaction)."""

    def _purge_index(self, q) -> None:
        """Drop what a deleted index row leaves inside the lexical index (in the transaction)."""

    def forget(self, namespace: Namespace, keys: bool = False) -> dict[str, int]:
        """Delete the records, index rows and events inside `namespace` (and, with `keys`, the API
        keys whose scope lies inside it), then compact; returns how many of each went."""
        where, params = where_sql(namespace)  # on api_keys too: a key's scope columns lie inside it
        counts = {}
        with self._tx(write=True) as q:
            counts["index_rows"] = q("DELETE FROM record_index WHERE record_id IN "
                                     f"(SELECT id FROM records WHERE {where})", params).rowcount
            counts["records"] = q(f"DELETE FROM records WHERE {where}", params).rowcount
            counts["events"] = q(f"DELETE FROM events WHERE {where}", params).rowcount
            counts["api_keys"] = q(f"DELETE FROM api_keys WHERE {where}", params).rowcount if keys else 0
            self._purge_index(q)
            q("UPDATE meta SET generation = generation + 1 WHERE name = 'store'")
        self._compact()
        return counts
