"""Fusing rankings: reciprocal-rank fusion, and the calibrated fusion that is recall's default.

`rrf` is the usual reciprocal-rank fusion (Cormack et al., 2009): it needs nothing but ranks,
and its score means nothing outside one query's list.

`Fusion` scores a candidate by logistic regression on what both retrievers say about it: the
dense cosine similarity to the query, its rank in the lexical and in the dense list (a rank r
counts `scale / (scale + r)`, 0 when absent), and the best of those for its neighbours, the
records written just before and after it in the recalled scope (in a conversation the answer is
often the reply to the turn that names the topic). Candidates are both lists' records and their
neighbours. The output estimates P(the record is evidence for the query), fitted on LoCoMo dev
conversations, so a `min_score` can drop hits that are unlikely for any query; the ranks are
relative to the query, so the cosine is what makes a question nothing answers score low. The
weights, the data and the command that fitted them are in docs/results.md ("recall fusion").
A `key` weight is the hook for a retrieval key trained for it: 0 today, so the memory key is
not computed on the default path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from r3mem.errors import InvalidInput

RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al., 2009)


def rrf(*rankings: list[str]) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion of several best-first id lists."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, record_id in enumerate(ranking):
            scores[record_id] = scores.get(record_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass(frozen=True)
class Fusion:
    """Weights of the calibrated fusion; the defaults were fitted on LoCoMo conv-26 and conv-30."""

    cosine: float = 2.119  # dense cosine similarity: the one absolute signal, what min_score leans on
    lexical: float = 3.923  # lexical rank: exact names and rare words the embedding blurs
    dense: float = 1.168  # dense rank: where the cosine sits among this scope's records
    neighbour_cosine: float = 1.106  # the best cosine of the records written just before and after:
    neighbour_lexical: float = 1.59  # an answer often sits next to the turn that names the topic
    key: float = 0.0  # memory-key cosine: not trained for retrieval yet, so not used (nor computed)
    bias: float = -8.093
    depth: int = 50  # candidates taken from each list (and their neighbours) before fusing
    scale: float = 10.0  # rank r counts scale / (scale + r)

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 1000:
            raise InvalidInput(f"fusion depth must be from 1 to 1000, got {self.depth}")
        if not self.scale > 0:
            raise InvalidInput(f"fusion scale must be positive, got {self.scale}")

    def rank_features(self, ranking: list[tuple[str, float]], position: dict[str, int], n: int) -> np.ndarray:
        """(n,) scale / (scale + rank) for the ranked ids, 0 for the rest."""
        out = np.zeros(n, np.float32)
        for rank, (record_id, _) in enumerate(ranking):
            if record_id in position:
                out[position[record_id]] = self.scale / (self.scale + rank)
        return out

    def features(self, cosines: np.ndarray, lexical: np.ndarray, dense: np.ndarray,
                 keys: np.ndarray | None = None) -> np.ndarray:
        """(n, 6) inputs `weights` multiplies, for n records in write order (for neighbours)."""
        def neighbours(x: np.ndarray) -> np.ndarray:
            padded = np.concatenate([[0.0], x, [0.0]]).astype(np.float32)
            return np.maximum(padded[:-2], padded[2:])

        keys = np.zeros_like(cosines) if keys is None else keys
        return np.stack([cosines, lexical, dense, neighbours(cosines), neighbours(lexical), keys], 1)

    @property
    def weights(self) -> np.ndarray:
        return np.array([self.cosine, self.lexical, self.dense, self.neighbour_cosine, self.neighbour_lexical,
                         self.key], np.float32)


DEFAULT_FUSION = Fusion()


def candidates(lexical: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """Positions in either list, and their neighbours (in write order)."""
    hit = (lexical > 0) | (dense > 0)
    near = hit.copy()
    near[1:] |= hit[:-1]
    near[:-1] |= hit[1:]
    return np.flatnonzero(near)


def fuse(fusion: Fusion, ids: list[str], cosines: np.ndarray, lexical: list[tuple[str, float]],
         dense: list[tuple[str, float]], keys: dict[str, float] | None = None) -> list[tuple[str, float]]:
    """Candidates scored by `fusion` as P(evidence), best first.

    `ids` are every record in scope in write order and `cosines` (N,) their similarity to the
    query; `lexical` and `dense` are the two best-first lists (`fusion.depth` long)."""
    if not ids:
        return []
    position = {record_id: n for n, record_id in enumerate(ids)}
    lexical_f = fusion.rank_features(lexical, position, len(ids))
    dense_f = fusion.rank_features(dense, position, len(ids))
    key_f = None if keys is None else np.array([keys.get(i, 0.0) for i in ids], np.float32)
    pool = candidates(lexical_f, dense_f)
    z = fusion.features(cosines, lexical_f, dense_f, key_f)[pool] @ fusion.weights + fusion.bias
    scores = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    order = np.lexsort((pool, -scores))  # ties: the earlier record
    return [(ids[pool[k]], float(scores[k])) for k in order]
