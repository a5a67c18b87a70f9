"""Ranking stored records for a query: by memory, by key, by BM25, or a hybrid of them.

- `memory` (default): exact query likelihood, -mean NLL of the query under each record's
  memory, for every record when the namespace is small, else for a shortlist picked by
  key similarity (the reversible memory itself is the relevance judge).
- `key`: cosine similarity of retrieval keys only; one matrix product, for large stores.
- `bm25`: lexical, over the records that kept their text.
- `hybrid`: reciprocal-rank fusion of `memory` and `bm25`.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from r3mem.bm25 import BM25Retriever
from r3mem.errors import InvalidInput
from r3mem.store.backend import StoreBackend
from r3mem.store.encoder import RecordEncoder
from r3mem.store.namespace import Namespace

METHODS = ("memory", "key", "bm25", "hybrid")
EXACT_LIMIT = 64  # up to this many records, query likelihood scores all of them
SHORTLIST = 24  # beyond it, the key shortlist that query likelihood re-ranks (~1 s on 2 CPU cores)
_SCORE_BATCH = 32
_RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al., 2009)


class KeyCache:
    """(ids, keys) per (namespace, level), valid while the store's generation is unchanged."""

    def __init__(self, backend: StoreBackend) -> None:
        self.backend = backend
        self._cache: dict[tuple, tuple[int, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: Namespace, level: str | None) -> tuple[list[str], np.ndarray]:
        generation = self.backend.generation()
        slot = (namespace, level)
        with self._lock:
            hit = self._cache.get(slot)
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2]
        ids, keys = self.backend.keys(namespace, level)
        with self._lock:
            if len(self._cache) > 64:  # bound memory: namespaces come and go
                self._cache.clear()
            self._cache[slot] = (generation, ids, keys)
        return ids, keys


def by_key(keys: np.ndarray, query_key: np.ndarray) -> np.ndarray:
    return keys @ query_key if len(keys) else np.zeros(0, np.float32)


@torch.no_grad()
def query_likelihood(encoder: RecordEncoder, memories: list[torch.Tensor], query: str) -> list[float]:
    """-mean NLL per query token under each memory (m, d): higher = more relevant.

    Memories of equal m share a forward pass; records have m in proportion to their length.
    """
    r3 = encoder.r3
    ids = torch.tensor([r3.tokenize(query)], device=r3.device)  # (1, Q)
    scores = [0.0] * len(memories)
    groups: dict[int, list[int]] = {}
    for i, memory in enumerate(memories):
        groups.setdefault(int(memory.shape[0]), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), _SCORE_BATCH):
            batch = members[start : start + _SCORE_BATCH]
            memory = torch.stack([memories[i] for i in batch]).to(r3.device, torch.float32)  # (B, m, d)
            target = ids.expand(len(batch), -1)  # (B, Q)
            stats = r3.network.read(memory, target, marker="continue", keep_logits=True)
            nll = F.cross_entropy(stats.kept_logits, target.reshape(-1), reduction="none")  # (B * Q,)
            for i, score in zip(batch, (-nll.view(len(batch), -1).mean(1)).tolist(), strict=True):
                scores[i] = score
    return scores


def rrf(*rankings: list[str]) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of several best-first id lists."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, record_id in enumerate(ranking):
            scores[record_id] = scores.get(record_id, 0.0) + 1.0 / (_RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def bm25_ranking(backend: StoreBackend, namespace: Namespace, level: str | None, query: str,
                 k: int) -> list[tuple[str, float]]:
    ids, texts = backend.texts(namespace, level)
    hits = BM25Retriever(texts).search(query, k)
    return [(ids[i], score) for i, score in hits if score > 0]


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InvalidInput(f"recall method must be one of {', '.join(METHODS)}, got {method!r}")
