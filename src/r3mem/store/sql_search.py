"""The index half of `SQLBackend`: lexical search, dense vectors and index upkeep, in portable SQL.

A backend supplies its lexical query (`_search_sql`, `_match`) and its metadata test
(`_metadata_equals`); everything else here reads and writes `record_index` (`r3mem.store.index`)
joined to `records`, so namespaces, levels and filters are applied by the database.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager

import numpy as np

from r3mem.store.filters import RecallFilter, where_sql
from r3mem.store.index import IndexEntry, decode_vectors
from r3mem.store.lexical import MAX_PAIR_TERMS, OVERFETCH, SCOPE_SIZE, SCOPED_MAX, terms
from r3mem.store.namespace import Namespace

_INDEX_FLAG = "record_index"  # meta row: text records of a store from before the index are indexed


class SearchQueries:
    """Mixed into `SQLBackend`; see the module docstring."""

    _search_sql: str  # a query template with {where}; params: match, *where, limit
    _search_top_sql: str | None = None  # the same over the engine's best OVERFETCH matches only
    _matches_sql: str = ""  # with _search_top_sql: how many records match, counted up to OVERFETCH + 1
    _search_pairs_sql: str | None = None  # the same over records holding two query words, tried first
    _search_scoped_sql: str | None = None  # the same over a small scope's own rows; params: *where, match, limit
    _scoped_max = SCOPED_MAX  # the largest scope ranked on its own rows

    @abstractmethod
    def _tx(self, write: bool = False) -> AbstractContextManager: ...

    @abstractmethod
    def _match(self, words: list[str]) -> str:
        """The backend's lexical query parameter for these words."""

    @abstractmethod
    def _metadata_equals(self, column: str, key: str) -> tuple[str, str]:
        """SQL testing one metadata key against a JSON scalar param, and the key's own param."""

    def _records_where(self, namespace: Namespace, level: str | None, flt: RecallFilter | None) -> tuple[str, list]:
        return where_sql(namespace, level, "r.", flt, self._metadata_equals)

    @staticmethod
    def _migrate_index(q) -> None:
        """Index the text records of a store written before `record_index` existed (once).

        Text alone needs no model: the rows' bodies are written here, their vectors when dense
        recall first finds them missing; memory-only records are indexed by `MemoryStore`."""
        if q("SELECT 1 FROM meta WHERE name = ?", (_INDEX_FLAG,)).fetchone():
            return
        q("INSERT INTO record_index (record_id, body, source) SELECT r.id, r.text, 'text' FROM records r "
          "WHERE r.text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM record_index i WHERE i.record_id = r.id)")
        q("INSERT INTO meta (name, generation) VALUES (?, 0)", (_INDEX_FLAG,))
        q("UPDATE meta SET generation = generation + 1 WHERE name = 'store'")

    def lexical(self, query: str, namespace: Namespace, level: str | None = None,
                flt: RecallFilter | None = None, k: int = 50) -> list[tuple[str, float]]:
        """Up to `k` (record id, score) by the lexical index, best first; [] for a query of stop words."""
        words = terms(query)
        if not words:
            return []
        where, params = self._records_where(namespace, level, flt)
        match = self._match(words)
        args = (match, *params, int(k))
        with self._tx() as q:
            if self._search_scoped_sql is not None and self._scope_size(q, where, params) <= self._scoped_max:
                rows = q(self._search_scoped_sql.format(where=where), (*params, match, int(k))).fetchall()
                return [(r[0], float(r[1])) for r in rows]
            # each shortcut stands only when it fills k: then it is the full ranking's answer
            if self._search_pairs_sql is not None and 1 < len(words) <= MAX_PAIR_TERMS:
                rows = q(self._search_pairs_sql.format(where=where), args).fetchall()
                if len(rows) == k:
                    return [(r[0], float(r[1])) for r in rows]
            rows = []
            if self._search_top_sql is not None:
                rows = q(self._search_top_sql.format(where=where), args).fetchall()
            if len(rows) < k and (self._search_top_sql is None or self._matches(q, match) > OVERFETCH):
                rows = q(self._search_sql.format(where=where), args).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    @staticmethod
    def _scope_size(q, where: str, params: list) -> int:
        """How many records the scope holds, counted up to SCOPED_MAX + 1 (by the namespace index)."""
        return int(q(SCOPE_SIZE.format(where=where), tuple(params)).fetchone()[0])

    def _matches(self, q, match: str) -> int:
        """How many records the lexical query matches, counted up to OVERFETCH + 1."""
        return int(q(self._matches_sql, (match,)).fetchone()[0])

    def vectors(self, namespace: Namespace, level: str | None, flt: RecallFilter | None,
                embedder: str) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Ids and (N, d) vectors `embedder` wrote for the indexed records in scope, and the
        (id, body) of those in scope it has not embedded yet."""
        where, params = self._records_where(namespace, level, flt)
        with self._tx() as q:
            rows = q("SELECT i.record_id, CASE WHEN i.embedder = ? THEN i.vector END, "
                     "CASE WHEN i.embedder = ? THEN NULL ELSE i.body END "
                     f"FROM record_index i JOIN records r ON r.id = i.record_id WHERE {where} ORDER BY i.doc",
                     (embedder, embedder, *params)).fetchall()
        done = [(r[0], bytes(r[1])) for r in rows if r[1] is not None]
        missing = [(r[0], r[2]) for r in rows if r[1] is None]
        return [i for i, _ in done], decode_vectors([v for _, v in done]), missing

    def set_vectors(self, entries: list[IndexEntry]) -> None:
        """Write vectors into existing index rows (rows deleted meanwhile are skipped)."""
        with self._tx(write=True) as q:
            for e in entries:
                q("UPDATE record_index SET vector = ?, embedder = ? WHERE record_id = ?",
                  (e.vector, e.embedder, e.record_id))
            q("UPDATE meta SET generation = generation + 1 WHERE name = 'store'")

    def add_index(self, entries: list[IndexEntry]) -> None:
        """Index rows for records that have none (a record deleted meanwhile is skipped)."""
        with self._tx(write=True) as q:
            for e in entries:
                q("INSERT INTO record_index (record_id, body, source, embedder, vector) "
                  "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM records WHERE id = ?) "
                  "AND NOT EXISTS (SELECT 1 FROM record_index WHERE record_id = ?)",
                  (e.record_id, e.body, e.source, e.embedder, e.vector, e.record_id, e.record_id))
            q("UPDATE meta SET generation = generation + 1 WHERE name = 'store'")

