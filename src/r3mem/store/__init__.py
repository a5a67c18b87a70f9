"""The memory store: namespaced records of compressed, reversible memory (see `MemoryStore`)."""

from r3mem.store.filters import RecallFilter
from r3mem.store.memory_store import Answer, Hit, MemoryStore
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record

__all__ = ["Answer", "Hit", "MemoryStore", "Namespace", "RecallFilter", "Record"]
