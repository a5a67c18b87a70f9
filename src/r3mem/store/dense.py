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


class PrimedEmbedder:
    """An embedder that first serves vectors embedded ahead (`prime`), each once, and embeds the rest.

    Why: the service embeds the texts of the requests waiting together (recall queries, added
    turns) in one batch before the first of them runs; one MiniLM pass over several short texts
    costs little more than one. A primed vector is the same text's embedding, so results are
    unchanged (up to float rounding: padding is masked)."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner, self.name = embedder, embedder.name
        self._primed: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        # one encode at a time: a fast tokenizer refuses concurrent calls ("Already borrowed")
        self._encoding = threading.Lock()

    def __getattr__(self, name: str):  # anything else the wrapped embedder offers (a test's counters)
        return getattr(self.inner, name)

    def prime(self, texts: list[str]) -> None:
        """Embed `texts` in one batch, shortest first, so a batch pads each to a similar length."""
        with self._lock:
            todo = sorted({t for t in texts if t not in self._primed}, key=len)
        if not todo:
            return
        with self._encoding:
            vectors = self.inner.encode(todo)
        with self._lock:
            if len(self._primed) > 1024:  # texts primed for requests that failed before embedding
                self._primed.clear()
            self._primed.update(zip(todo, vectors, strict=True))

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            found = {t: v for t in set(texts) if (v := self._primed.pop(t, None)) is not None}
        rest = [t for t in dict.fromkeys(texts) if t not in found]
        if rest or not texts:
            with self._encoding:
                vectors = self.inner.encode(rest)
            if not texts:
                return vectors
            found.update(zip(rest, vectors, strict=True))
        return np.stack([found[t] for t in texts])


class DenseIndex:
    """Cached vector matrices per (namespace, level, filter), valid for one store generation."""

    def __init__(self, backend: StoreBackend, embedder: Callable[[], Embedder]) -> None:
        self.backend = backend
        self._embedder_factory = embedder
        self._embedder: PrimedEmbedder | None = None
        self._cache: dict[tuple, tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()

    @property
    def embedder(self) -> PrimedEmbedder:
        if self._embedder is None:
            self._embedder = PrimedEmbedder(self._embedder_factory())
        return self._embedder

    def prime(self, texts: list[str]) -> None:
        """Embed ahead, in one batch, texts about to be embedded one request at a time (`PrimedEmbedder`)."""
        self.embedder.prime(texts)

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

    def similarities(self, query: str, namespace: Namespace, level: str | None,
                     flt: RecallFilter | None) -> tuple[list[str], np.ndarray]:
        """Ids in scope and their cosine similarity to `query`."""
        ids, vectors = self.matrix(namespace, level, flt)
        if not ids:
            return [], np.zeros(0, np.float32)
        return ids, vectors @ self.embedder.encode([query])[0]


def top(ids: list[str], scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The `k` best (id, score), best first; ties go to the earlier record."""
    if len(ids) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        order = part[np.lexsort((part, -scores[part]))]
    else:
        order = np.lexsort((np.arange(len(ids)), -scores))
    return [(ids[i], float(scores[i])) for i in order]
