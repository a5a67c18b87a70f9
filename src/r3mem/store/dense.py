"""Dense recall: exact cosine similarity over the vectors stored beside each record.

The vectors of a namespace (within a level and filter) are read once into an (N, d) matrix and
kept while the store's generation is unchanged; a query is one embedding and one matrix product.
Exact search is the only kind here, on SQLite and PostgreSQL alike: this Debian release packages
no pgvector, and at 100k records of 384 dimensions the product is a few milliseconds.

Index rows without a vector from the current embedder (a store from before dense recall, an
import, or vectors another embedder wrote) are embedded on the first recall that reaches them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from r3mem.store.backend import StoreBackend
from r3mem.store.embedder import Embedder
from r3mem.store.filters import RecallFilter
from r3mem.store.index import IndexEntry, encode_vector
from r3mem.store.namespace import Namespace

_CACHE_SLOTS = 64  # (namespace, level, filter) matrices kept; namespaces come and go
_EMBED_BATCH = 256  # missing vectors embedded and written back per transaction


class DenseIndex:
    """Cached vector matrices per (namespace, level, filter), valid for one store generation."""

    def __init__(self, backend: StoreBackend, embedder: Callable[[], Embedder]) -> None:
        self.backend = backend
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._cache: dict[tuple, tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()
        self._primed: dict[str, np.ndarray] = {}  # query -> vector, embedded ahead in a batch (`prime`)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    def matrix(self, namespace: Namespace, level: str | None,
               flt: RecallFilter | None) -> tuple[list[str], np.ndarray]:
        slot = (namespace, level, flt)
        generation = self.backend.generation()
        with self._lock:
            hit = self._cache.get(slot)
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2]
        ids, vectors, missing = self.backend.vectors(namespace, level, flt, self.embedder.name)
        if missing:
            self._embed_missing(missing)
            generation = self.backend.generation()
            ids, vectors, _ = self.backend.vectors(namespace, level, flt, self.embedder.name)
        with self._lock:
            if len(self._cache) >= _CACHE_SLOTS:
                self._cache.clear()
            self._cache[slot] = (generation, ids, vectors)
        return ids, vectors

    def _embed_missing(self, missing: list[tuple[str, str]]) -> None:
        for start in range(0, len(missing), _EMBED_BATCH):
            batch = missing[start : start + _EMBED_BATCH]
            vectors = self.embedder.encode([body or " " for _, body in batch])
            self.backend.set_vectors([IndexEntry(i, body, "", encode_vector(v), self.embedder.name)
                                      for (i, body), v in zip(batch, vectors, strict=True)])

    def prime(self, queries: list[str]) -> None:
        """Embed the queries of recalls about to run in one batch, so each then finds its vector
        ready: one MiniLM pass over several short queries costs little more than one. Sorted by
        length, so a batch pads each query to a similar length (the attention mask hides padding)."""
        todo = sorted({q for q in queries if q not in self._primed}, key=len)
        if not todo:
            return
        vectors = self.embedder.encode(todo)
        with self._lock:
            if len(self._primed) > 4 * _CACHE_SLOTS:  # a primed query whose recall failed first
                self._primed.clear()
            self._primed.update(zip(todo, vectors, strict=True))

    def query_vector(self, query: str) -> np.ndarray:
        with self._lock:
            vector = self._primed.pop(query, None)
        return vector if vector is not None else self.embedder.encode([query])[0]

    def similarities(self, query: str, namespace: Namespace, level: str | None,
                     flt: RecallFilter | None) -> tuple[list[str], np.ndarray]:
        """Ids in scope and their cosine similarity to `query`."""
        ids, vectors = self.matrix(namespace, level, flt)
        if not ids:
            return [], np.zeros(0, np.float32)
        return ids, vectors @ self.query_vector(query)


def top(ids: list[str], scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The `k` best (id, score), best first; ties go to the earlier record."""
    if len(ids) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((part, -scores[part]))]
    else:
        order = np.lexsort((np.arange(len(ids)), -scores))
    return [(ids[i], float(scores[i])) for i in order]
