"""`StoreBackend`: the contract every storage backend keeps.

The store (`MemoryStore`) owns the model and the meaning of records; a backend only
keeps rows. Every backend promises:

- Each write method is one transaction: after it returns, every record it names is
  durable and intact; if it raises, nothing of it is visible (no half-written record).
- Every change to a record (add, update, delete) appends an `Event` in the same
  transaction, so `history` is a complete audit trail, and events outlive their record.
- Reads take a namespace filter and never return rows outside it.
- `generation()` changes whenever any record changes, so callers may cache derived
  data (the key matrix) and know when it is stale, even across processes and replicas.
- A text record may be written `pending` (no memory yet) and get its memory later, by
  `set_memories`; `keys` and `count_foreign` leave pending records out.
- Each record has at most one index row (`IndexEntry`: the body lexical recall matches, the
  vector dense recall compares), written in the transaction that writes the record and gone
  with it; lexical search reads a persistent index, never one rebuilt per query.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from r3mem.store.filters import RecallFilter
from r3mem.store.index import IndexEntry
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record


@dataclass(frozen=True)
class Event:
    """One entry of a record's audit trail."""

    seq: int
    record_id: str
    op: str  # add | update | delete | import
    at: float
    namespace: Namespace
    detail: dict


@dataclass(frozen=True)
class ApiKey:
    """A service key: only its hash is stored; `scope` is the widest namespace it may touch."""

    key_hash: str
    scope: Namespace
    label: str


class StoreBackend(ABC):
    """Rows of records, events and API keys; see the module docstring for the contract."""

    url: str

    @property
    def redacted_url(self) -> str:
        """The URL with its credentials masked, for messages and logs."""
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return self.url

    @abstractmethod
    def insert(self, records: list[Record], op: str = "add", index: list[IndexEntry] | None = None) -> None:
        """Add new records (ids must be unused) with one `op` event each, and their index rows
        (`index`; a text record without an entry is indexed by its text, unembedded)."""

    @abstractmethod
    def get(self, record_id: str, namespace: Namespace) -> Record | None:
        """The record with that id if it lies inside `namespace`, else None."""

    @abstractmethod
    def find(self, namespace: Namespace, level: str | None = None, limit: int | None = None,
             offset: int = 0) -> list[Record]:
        """Records inside `namespace` (optionally of one level), oldest first."""

    @abstractmethod
    def fetch(self, ids: list[str], namespace: Namespace) -> list[Record]:
        """The records with these ids inside `namespace`, in the order of `ids` (missing ones skipped)."""

    @abstractmethod
    def existing(self, ids: list[str]) -> list[str]:
        """Which of `ids` the store holds, in any namespace (ids are random: this reveals nothing)."""

    @abstractmethod
    def keys(self, namespace: Namespace, level: str | None = None,
             flt: RecallFilter | None = None) -> tuple[list[str], np.ndarray]:
        """Ids and (N, d) float32 retrieval keys of the records inside `namespace`."""

    @abstractmethod
    def lexical(self, query: str, namespace: Namespace, level: str | None = None,
                flt: RecallFilter | None = None, k: int = 50) -> list[tuple[str, float]]:
        """Up to `k` (id, score) from the lexical index, best first (scores are the engine's own)."""

    @abstractmethod
    def vectors(self, namespace: Namespace, level: str | None, flt: RecallFilter | None,
                embedder: str) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """Ids and vectors `embedder` wrote for indexed records in scope, and (id, body) of the rest."""

    @abstractmethod
    def set_vectors(self, entries: list[IndexEntry]) -> None:
        """Write the entries' vectors into existing index rows."""

    @abstractmethod
    def pending(self, namespace: Namespace | None = None, limit: int = 256) -> list[Record]:
        """Up to `limit` records (inside `namespace`, or anywhere) whose memory is not written yet."""

    @abstractmethod
    def set_memories(self, records: list[Record]) -> int:
        """Write the memories of pending records, unless the record changed or went meanwhile;
        returns how many were written. Not an event: the record says the same as before."""

    @abstractmethod
    def set_keys(self, records: list[Record]) -> int:
        """Replace the retrieval keys (and record checksums) of written records, unless the record
        changed or went meanwhile; returns how many were written. Not an event: what the record
        says is unchanged, only how it is found."""

    @abstractmethod
    def unindexed(self, namespace: Namespace) -> Iterator[list[Record]]:
        """Batches of the records inside `namespace` without an index row."""

    @abstractmethod
    def add_index(self, entries: list[IndexEntry]) -> None:
        """Index rows for records that have none; entries of vanished records are skipped."""

    @abstractmethod
    def texts(self, namespace: Namespace, level: str | None = None) -> tuple[list[str], list[str]]:
        """Ids and stored texts of the records inside `namespace` that kept their text."""

    @abstractmethod
    def replace(self, record: Record, detail: dict, descendants: list[Record] | None = None,
                index: list[IndexEntry] | None = None) -> None:
        """Overwrite an existing record (same id) and log an `update` event with `detail`; a new
        text (`text_after` in `detail`) or an entry in `index` replaces its index row.

        With `descendants`, the record's old subtree is deleted and these records take its
        place, in the same transaction (a re-written text gets a new hierarchy).
        """

    @abstractmethod
    def delete(self, record_id: str, namespace: Namespace) -> list[str]:
        """Delete the record and its descendants inside `namespace`; return the deleted ids."""

    @abstractmethod
    def delete_all(self, namespace: Namespace) -> int:
        """Delete every record inside `namespace`; return how many."""

    @abstractmethod
    def forget(self, namespace: Namespace, keys: bool = False) -> dict[str, int]:
        """Delete every record, index row and event inside `namespace` (with `keys`, also the API
        keys scoped inside it), logging nothing, and leave none of their bytes in the database's
        files; return counts per kind (`r3mem.store.forget`)."""

    @abstractmethod
    def history(self, record_id: str, namespace: Namespace) -> list[Event]:
        """Events of that record inside `namespace`, oldest first (also after deletion)."""

    @abstractmethod
    def count_foreign(self, namespace: Namespace, model_fingerprint: str, checkpoint_fingerprint: str) -> int:
        """How many records inside `namespace` another base model or checkpoint made."""

    @abstractmethod
    def stats(self, namespace: Namespace) -> dict:
        """Record counts per level, bytes of memory and text, checkpoints seen."""

    @abstractmethod
    def generation(self) -> int:
        """A number that changes on every committed record change."""

    @abstractmethod
    def add_api_key(self, key: ApiKey) -> None: ...

    @abstractmethod
    def api_key(self, key_hash: str) -> ApiKey | None: ...

    @abstractmethod
    def close(self) -> None: ...
