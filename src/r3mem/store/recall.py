"""Recall methods, and the memory-based rankers among them.

- `fused` (default): calibrated fusion of the lexical index and dense vectors
  (`r3mem.store.fusion`); its score estimates P(evidence), so `min_score` is one threshold
  for every query.
- `bm25`: the persistent lexical index (SQLite FTS5 bm25, PostgreSQL ts_rank).
- `dense`: cosine similarity of MiniLM vectors stored beside each record (`r3mem.store.dense`).
- `bm25_dense`: reciprocal-rank fusion of `bm25` and `dense`.
- `memory`: exact query likelihood, -mean NLL of the query under each record's memory, for
  every record when the namespace is small, else for a shortlist picked by key similarity.
- `key`: cosine similarity of the memory's retrieval keys only; one matrix product.
- `hybrid`: reciprocal-rank fusion of `memory` and `bm25`.

Which is the default, and why, is measured in docs/results.md (LoCoMo).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from r3mem.errors import InvalidInput
from r3mem.store.backend import StoreBackend
from r3mem.store.filters import RecallFilter
from r3mem.store.namespace import Namespace

if TYPE_CHECKING:  # the model stack loads only with the model
    import torch

    from r3mem.store.encoder import RecordEncoder

METHODS = ("fused", "bm25", "dense", "bm25_dense", "memory", "key", "hybrid")
DEFAULT_METHOD = "fused"
MODEL_METHODS = ("memory", "key", "hybrid")  # those that run the memory model on the query
EXACT_LIMIT = 64  # up to this many records, query likelihood scores all of them
SHORTLIST = 24  # beyond it, the key shortlist that query likelihood re-ranks (~1 s on 2 CPU cores)


class KeyCache:
    """(ids, keys) per (namespace, level), valid while the store's generation is unchanged."""

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend
        self._cache: dict[tuple, tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: Namespace, level: str | None,
            flt: RecallFilter | None = None) -> tuple[list[str], np.ndarray]:
        generation = self.backend.generation()
        slot = (namespace, level, flt)
        with self._lock:
            hit = self._cache.get(slot)
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2]
        ids, keys = self.backend.keys(namespace, level, flt)
        with self._lock:
            if len(self._cache) > 64:  # bound memory: namespaces come and go
                self._cache.clear()
            self._cache[slot] = (generation, ids, keys)
        return ids, keys


def by_key(keys: np.ndarray, query_key: np.ndarray) -> np.ndarray:
    return keys @ query_key if len(keys) else np.zeros(0, np.float32)


def query_likelihood(encoder: RecordEncoder, memories: list[torch.Tensor], query: str) -> list[float]:
    """-mean NLL per query token under each memory (m, d): higher = more relevant."""
    return [-nll for nll in encoder.r3.query_nll(memories, query)]


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidInput(f"recall method must be one of {', '.join(METHODS)}, got {method!r}")
