"""`SQLBackend`: the store contract in portable SQL, shared by SQLite and PostgreSQL.

Subclasses supply a connection, the DDL and a transaction; every query here is written
with `?` placeholders and plain types both databases read the same way.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np

from r3mem.errors import StoreError
from r3mem.store.backend import ApiKey, Event, StoreBackend
from r3mem.store.filters import RecallFilter
from r3mem.store.filters import where_sql as _where
from r3mem.store.forget import Forgetting
from r3mem.store.index import IndexEntry
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record, decode_key
from r3mem.store.sql_search import SearchQueries

COLUMNS = (
    "id", "user_id", "agent_id", "session_id", "level", "parent_id", "memory", "memory_dtype", "memory_shape",
    "segment_tokens", "key", "text", "metadata", "model_fingerprint", "checkpoint_fingerprint", "created_at",
    "updated_at", "memory_checksum", "checksum",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM records"
# A hierarchy is at most four deep (document, paragraph, sentence, entity); far more is a cycle.
_MAX_DEPTH = 32
_PENDING = "memory_shape = '[]'"  # a text record whose memory is not written yet (Record.pending)
_WRITTEN = "memory_shape <> '[]'"


class Cursor(Protocol):
    """The part of a DB-API cursor both drivers share and this module reads."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...


Query = Callable[..., Cursor]  # q(sql, params) -> cursor


def _row(record: Record) -> tuple:
    ns = record.namespace
    return (
        record.id, ns.user, ns.agent, ns.session, record.level, record.parent_id, record.memory,
        record.memory_dtype, json.dumps(record.memory_shape), json.dumps(record.segment_tokens), record.key,
        record.text, json.dumps(record.metadata, sort_keys=True, ensure_ascii=False), record.model_fingerprint,
        record.checkpoint_fingerprint, record.created_at, record.updated_at, record.memory_checksum, record.checksum,
    )


def _record(row) -> Record:
    values = dict(zip(COLUMNS, row, strict=True))
    try:
        return Record(
            id=values["id"], namespace=Namespace(values["user_id"], values["agent_id"], values["session_id"]),
            level=values["level"], parent_id=values["parent_id"], memory=bytes(values["memory"]),
            memory_dtype=values["memory_dtype"], memory_shape=tuple(json.loads(values["memory_shape"])),
            segment_tokens=json.loads(values["segment_tokens"]), key=bytes(values["key"]), text=values["text"],
            metadata=json.loads(values["metadata"]), model_fingerprint=values["model_fingerprint"],
            checkpoint_fingerprint=values["checkpoint_fingerprint"], created_at=values["created_at"],
            updated_at=values["updated_at"], memory_checksum=values["memory_checksum"], checksum=values["checksum"],
        )
    except (ValueError, TypeError) as exc:
        raise StoreError(f"record {values.get('id')}: unreadable row ({exc})") from exc


class SQLBackend(Forgetting, SearchQueries, StoreBackend):
    """Portable SQL over a per-thread connection; subclasses add the driver specifics."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()

    # -- driver specifics -----------------------------------------------------------
    @abstractmethod
    def _connect(self): ...

    @abstractmethod
    def _transaction(self, conn, write: bool) -> AbstractContextManager[Query]: ...

    @abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool: ...

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock, _suppress():
                self._connections.remove(conn)
                conn.close()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Query]:
        """One transaction; a driver error becomes StoreError and the connection is renewed."""
        try:
            with self._transaction(self._connection(), write) as q:
                yield q
        except Exception as exc:
            if not self._is_driver_error(exc):
                raise
            self._drop_connection()
            raise StoreError(f"store {self.redacted_url}: {str(exc).strip().splitlines()[0]}") from exc

    # -- writes ---------------------------------------------------------------------
    @staticmethod
    def _event(q: Query, record: Record, op: str, detail: dict) -> None:
        ns = record.namespace
        q("INSERT INTO events (record_id, op, at, user_id, agent_id, session_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
          (record.id, op, time.time(), ns.user, ns.agent, ns.session, json.dumps(detail, ensure_ascii=False)))

    @staticmethod
    def _bump(q: Query) -> None:
        q("UPDATE meta SET generation = generation + 1 WHERE name = 'store'")

    def insert(self, records: list[Record], op: str = "add", index: list[IndexEntry] | None = None) -> None:
        if not records:
            return
        with self._tx(write=True) as q:
            self._insert_rows(q, records, op, index)
            self._bump(q)

    def _insert_rows(self, q: Query, records: list[Record], op: str, index: list[IndexEntry] | None) -> None:
        sql = f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        entries = {e.record_id: e for e in index or []}
        for record in records:
            q(sql, _row(record))
            self._event(q, record, op, {"level": record.level, "checksum": record.checksum})
            self._index_row(q, record, entries.get(record.id))

    @staticmethod
    def _index_row(q: Query, record: Record, entry: IndexEntry | None) -> None:
        """The record's index row: `entry`, else its text unembedded (a memory-only record without
        an entry waits for `MemoryStore` to read its memory back)."""
        if entry is None and record.text is not None:
            entry = IndexEntry(record.id, record.text, "text")
        if entry is not None:
            q("INSERT INTO record_index (record_id, body, source, embedder, vector) VALUES (?, ?, ?, ?, ?)",
              (entry.record_id, entry.body, entry.source, entry.embedder, entry.vector))

    @staticmethod
    def _subtree(q: Query, record_id: str, namespace: Namespace) -> list[str]:
        """The record's id and its descendants' ids, root first; every step stays inside `namespace`,
        so a record another namespace hung under this one (by an import) is never reached, and the
        walk stops at `_MAX_DEPTH`, so a cycle of parents (a crafted row) cannot make it endless."""
        where, params = _where(namespace, prefix="r.")
        tree = (
            "WITH RECURSIVE sub(id, depth) AS (SELECT r.id, 0 FROM records r WHERE r.id = ? AND " + where +
            " UNION ALL SELECT r.id, sub.depth + 1 FROM records r JOIN sub ON r.parent_id = sub.id WHERE " +
            where + f" AND sub.depth < {_MAX_DEPTH}) "
        )
        rows = q(tree + "SELECT id FROM sub ORDER BY depth", (record_id, *params, *params)).fetchall()
        return list(dict.fromkeys(row[0] for row in rows))  # a cycle would name a record again

    def replace(self, record: Record, detail: dict, descendants: list[Record] | None = None,
                index: list[IndexEntry] | None = None) -> None:
        assignments = ", ".join(f"{c} = ?" for c in COLUMNS[1:])
        entries = {e.record_id: e for e in index or []}
        with self._tx(write=True) as q:
            cur = q(f"UPDATE records SET {assignments} WHERE id = ?", (*_row(record)[1:], record.id))
            if cur.rowcount != 1:
                raise StoreError(f"record {record.id} vanished during update")
            self._event(q, record, "update", {**detail, "checksum": record.checksum})
            if record.id in entries or "text_after" in detail:  # a new text: the old index row is stale
                q("DELETE FROM record_index WHERE record_id = ?", (record.id,))
                self._index_row(q, record, entries.get(record.id))
            if descendants is not None:
                self._delete_ids(q, self._subtree(q, record.id, record.namespace)[1:])
                self._insert_rows(q, descendants, "add", index)
            self._bump(q)

    def delete(self, record_id: str, namespace: Namespace) -> list[str]:
        with self._tx(write=True) as q:
            ids = self._subtree(q, record_id, namespace)
            self._delete_ids(q, ids)
        return ids

    def delete_all(self, namespace: Namespace) -> int:
        where, params = _where(namespace)
        with self._tx(write=True) as q:
            ids = [row[0] for row in q(f"SELECT id FROM records WHERE {where}", params).fetchall()]
            self._delete_ids(q, ids)
        return len(ids)

    def _delete_ids(self, q: Query, ids: list[str]) -> None:
        """Delete rows and log one `delete` event each, in set-based chunks (delete_all of 100k rows)."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            q("INSERT INTO events (record_id, op, at, user_id, agent_id, session_id, detail) "
              "SELECT id, 'delete', ?, user_id, agent_id, session_id, '{\"level\": \"' || level || '\"}' "
              f"FROM records WHERE id IN ({marks})", (time.time(), *chunk))
            q(f"DELETE FROM records WHERE id IN ({marks})", chunk)
        if ids:
            self._bump(q)

    # -- reads ----------------------------------------------------------------------
    def get(self, record_id: str, namespace: Namespace) -> Record | None:
        where, params = _where(namespace)
        with self._tx() as q:
            row = q(f"{_SELECT} WHERE id = ? AND {where}", (record_id, *params)).fetchone()
        return None if row is None else _record(row)

    def fetch(self, ids: list[str], namespace: Namespace) -> list[Record]:
        # Look up by primary key alone and filter the namespace here: given `id IN (...) AND
        # user_id = ?`, SQLite's planner picks the namespace index and scans every record of
        # the user (85 ms at 100k records, against under 1 ms by key).
        found = {}
        with self._tx() as q:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                for row in q(f"{_SELECT} WHERE id IN ({marks})", chunk).fetchall():
                    record = _record(row)
                    if namespace.contains(record.namespace):
                        found[record.id] = record
        return [found[i] for i in ids if i in found]

    def existing(self, ids: list[str]) -> list[str]:
        found: list[str] = []
        with self._tx() as q:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                found += [row[0] for row in q(f"SELECT id FROM records WHERE id IN ({marks})", chunk).fetchall()]
        return found

    def pending(self, namespace: Namespace | None = None, limit: int = 256) -> list[Record]:
        where, params = _where(namespace) if namespace is not None else ("1 = 1", [])
        with self._tx() as q:
            rows = q(f"{_SELECT} WHERE {where} AND {_PENDING} ORDER BY created_at, id LIMIT {int(limit)}",
                     params).fetchall()
        return [_record(row) for row in rows]

    def set_memories(self, records: list[Record]) -> int:
        columns = ("memory", "memory_dtype", "memory_shape", "segment_tokens", "key", "model_fingerprint",
                   "checkpoint_fingerprint", "memory_checksum", "checksum")
        written = 0
        with self._tx(write=True) as q:
            for record in records:
                row = dict(zip(COLUMNS, _row(record), strict=True))
                cur = q(f"UPDATE records SET {', '.join(c + ' = ?' for c in columns)} WHERE id = ? AND {_PENDING} "
                        "AND updated_at = ?", (*(row[c] for c in columns), record.id, record.updated_at))
                written += cur.rowcount
            if written:
                self._bump(q)
        return written

    def set_keys(self, records: list[Record]) -> int:
        written = 0
        with self._tx(write=True) as q:
            for record in records:
                cur = q(f"UPDATE records SET key = ?, checksum = ? WHERE id = ? AND {_WRITTEN} AND updated_at = ?",
                        (record.key, record.checksum, record.id, record.updated_at))
                written += cur.rowcount
            if written:
                self._bump(q)
        return written

    def unindexed(self, namespace: Namespace) -> Iterator[list[Record]]:
        """Batches of the records in `namespace` that have no index row yet (memory-only, mostly)."""
        where, params = _where(namespace, prefix="r.")
        with self._tx() as q:
            ids = [r[0] for r in q(f"SELECT r.id FROM records r WHERE {where} AND NOT EXISTS "
                                   "(SELECT 1 FROM record_index i WHERE i.record_id = r.id)", params).fetchall()]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self._tx() as q:
                rows = q(f"{_SELECT} WHERE id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            yield [_record(row) for row in rows]

    def find(self, namespace: Namespace, level: str | None = None, limit: int | None = None,
             offset: int = 0) -> list[Record]:
        where, params = _where(namespace, level)
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        with self._tx() as q:
            rows = q(f"{_SELECT} WHERE {where} ORDER BY created_at, id{page}", params).fetchall()
        return [_record(row) for row in rows]

    def keys(self, namespace: Namespace, level: str | None = None,
             flt: RecallFilter | None = None) -> tuple[list[str], np.ndarray]:
        where, params = _where(namespace, level, "", flt, self._metadata_equals)
        with self._tx() as q:
            rows = q(f"SELECT id, key FROM records WHERE {where} AND {_WRITTEN} ORDER BY created_at, id",
                     params).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        blobs = [bytes(r[1]) for r in rows]
        if len({len(b) for b in blobs}) == 1:  # one model's keys: decode all at once
            keys = np.frombuffer(b"".join(blobs), "<f2").reshape(len(blobs), -1).astype(np.float32)
        else:  # keys of several models (recall refuses those anyway): shapes differ, pad nothing
            width = max(len(b) for b in blobs) // 2
            keys = np.stack([np.pad(decode_key(b), (0, width - len(b) // 2)) for b in blobs])
        return [r[0] for r in rows], keys

    def texts(self, namespace: Namespace, level: str | None = None) -> tuple[list[str], list[str]]:
        where, params = _where(namespace, level)
        with self._tx() as q:
            rows = q(f"SELECT id, text FROM records WHERE {where} AND text IS NOT NULL ORDER BY created_at, id",
                     params).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def history(self, record_id: str, namespace: Namespace) -> list[Event]:
        where, params = _where(namespace)
        with self._tx() as q:
            rows = q(f"SELECT seq, record_id, op, at, user_id, agent_id, session_id, detail FROM events "
                     f"WHERE record_id = ? AND {where} ORDER BY seq", (record_id, *params)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], Namespace(r[4], r[5], r[6]), json.loads(r[7])) for r in rows]

    def count_foreign(self, namespace: Namespace, model_fingerprint: str, checkpoint_fingerprint: str) -> int:
        where, params = _where(namespace)
        with self._tx() as q:
            row = q(f"SELECT COUNT(*) FROM records WHERE {where} AND {_WRITTEN} "
                    "AND (model_fingerprint <> ? OR checkpoint_fingerprint <> ?)",
                    (*params, model_fingerprint, checkpoint_fingerprint)).fetchone()
        return int(row[0])

    def stats(self, namespace: Namespace) -> dict:
        where, params = _where(namespace)
        with self._tx() as q:
            levels = q(f"SELECT level, COUNT(*), COALESCE(SUM(LENGTH(memory)), 0), "
                       f"COALESCE(SUM(LENGTH(text)), 0) FROM records WHERE {where} GROUP BY level", params).fetchall()
            checkpoints = q(f"SELECT DISTINCT checkpoint_fingerprint FROM records WHERE {where}", params).fetchall()
        return {
            "records": sum(int(r[1]) for r in levels),
            "by_level": {r[0]: int(r[1]) for r in sorted(levels)},
            "memory_bytes": sum(int(r[2]) for r in levels),
            "text_bytes": sum(int(r[3]) for r in levels),
            "checkpoints": sorted(r[0] for r in checkpoints),
        }

    def generation(self) -> int:
        with self._tx() as q:
            return int(q("SELECT generation FROM meta WHERE name = 'store'").fetchone()[0])

    # -- API keys -------------------------------------------------------------------
    def add_api_key(self, key: ApiKey) -> None:
        ns = key.scope
        with self._tx(write=True) as q:
            q("INSERT INTO api_keys (key_hash, user_id, agent_id, session_id, label, created_at) "
              "VALUES (?, ?, ?, ?, ?, ?)", (key.key_hash, ns.user, ns.agent, ns.session, key.label, time.time()))

    def api_key(self, key_hash: str) -> ApiKey | None:
        with self._tx() as q:
            row = q("SELECT key_hash, user_id, agent_id, session_id, label FROM api_keys WHERE key_hash = ?",
                    (key_hash,)).fetchone()
        return None if row is None else ApiKey(row[0], Namespace(*row[1:4]), row[4])

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                with _suppress():
                    conn.close()
            self._connections.clear()
        self._local = threading.local()


def _suppress():
    """Closing a broken connection may fail; there is nothing left to save."""
    return contextlib.suppress(Exception)


def schema(blob: str, serial: str) -> list[str]:
    """The DDL, with the two types the databases spell differently."""
    return [
        # The memory blob is the last column: SQLite keeps a row's columns in order and spills
        # large values to overflow pages, so every column after a blob costs a walk over it.
        f"""CREATE TABLE IF NOT EXISTS records (
            id TEXT PRIMARY KEY, user_id TEXT, agent_id TEXT, session_id TEXT,
            level TEXT NOT NULL, parent_id TEXT, memory_dtype TEXT NOT NULL,
            memory_shape TEXT NOT NULL, segment_tokens TEXT NOT NULL, key {blob} NOT NULL,
            model_fingerprint TEXT NOT NULL, checkpoint_fingerprint TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            memory_checksum TEXT NOT NULL, checksum TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT,
            memory {blob} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS records_namespace ON records (user_id, agent_id, session_id, level)",
        # covers recall's check that every record of a namespace came from the loaded checkpoint
        "CREATE INDEX IF NOT EXISTS records_fingerprints ON records "
        "(user_id, agent_id, session_id, model_fingerprint, checkpoint_fingerprint)",
        "CREATE INDEX IF NOT EXISTS records_agent ON records (agent_id, session_id)",
        "CREATE INDEX IF NOT EXISTS records_session ON records (session_id)",
        "CREATE INDEX IF NOT EXISTS records_parent ON records (parent_id)",
        # the few text records whose memory is still to be written (MemoryStore.flush finds them)
        "CREATE INDEX IF NOT EXISTS records_pending ON records (created_at) WHERE memory_shape = '[]'",
        f"""CREATE TABLE IF NOT EXISTS events (
            seq {serial}, record_id TEXT NOT NULL, op TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            user_id TEXT, agent_id TEXT, session_id TEXT, detail TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS events_record ON events (record_id)",
        """CREATE TABLE IF NOT EXISTS api_keys (
            key_hash TEXT PRIMARY KEY, user_id TEXT, agent_id TEXT, session_id TEXT,
            label TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, generation BIGINT NOT NULL)",
        # What recall searches, one row per record (r3mem.store.index); the cascade removes it
        # with its record in the same statement, so the index never names a deleted record.
        f"""CREATE TABLE IF NOT EXISTS record_index (
            doc {serial}, record_id TEXT NOT NULL UNIQUE REFERENCES records (id) ON DELETE CASCADE,
            source TEXT NOT NULL, embedder TEXT, vector {blob}, body TEXT NOT NULL)""",
        "INSERT INTO meta (name, generation) SELECT 'store', 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM meta WHERE name = 'store')",
    ]
