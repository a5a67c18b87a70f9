"""Fusing rankings: reciprocal-rank fusion, and the calibrated fusion that is recall's default.

`rrf` is the usual reciprocal-rank fusion (Cormack et al., 2009): it needs nothing but ranks,
and its score means nothing outside one query's list.

`Fusion` scores a candidate by logistic regression on what both retrievers say about it: the
dense cosine similarity to the query, and its rank in the lexical and in the dense list (a rank
r counts `scale / (scale + r)`, 0 when absent). The output is an estimate of P(the record is
evidence for the query), fitted on LoCoMo dev conversations, so one `min_score` means the same
for every query and a question nothing stored answers can get an empty result. The weights, the
data and the command that fitted them are in docs/results.md (section "recall fusion").
A `key` weight is the hook for a retrieval key trained for it: 0 today, so the memory key is
not computed on the default path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    cosine: float = 9.0  # dense cosine similarity carries most of the evidence
    lexical: float = 2.0  # lexical rank: exact names and rare words the embedding blurs
    dense: float = 1.0  # dense rank: where the cosine sits among this namespace's records
    key: float = 0.0  # memory-key cosine: not trained for retrieval yet, so not used
    bias: float = -7.0
    depth: int = 50  # candidates taken from each list before fusing
    scale: float = 10.0  # rank r counts scale / (scale + r)

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 1000:
            raise InvalidInput(f"fusion depth must be from 1 to 1000, got {self.depth}")
        if not self.scale > 0:
            raise InvalidInput(f"fusion scale must be positive, got {self.scale}")

    def rank_feature(self, rank: int | None) -> float:
        return 0.0 if rank is None else self.scale / (self.scale + rank)

    def score(self, cosine: float, lexical_rank: int | None, dense_rank: int | None, key: float = 0.0) -> float:
        """P(evidence) for one candidate: a logistic function of its features."""
        z = (self.bias + self.cosine * cosine + self.lexical * self.rank_feature(lexical_rank)
             + self.dense * self.rank_feature(dense_rank) + self.key * key)
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    def features(self, cosine: float, lexical_rank: int | None, dense_rank: int | None) -> list[float]:
        """The inputs `score` weighs (for fitting), in the order of the weights."""
        return [cosine, self.rank_feature(lexical_rank), self.rank_feature(dense_rank)]


DEFAULT_FUSION = Fusion()


def fuse(fusion: Fusion, ids: list[str], cosines, lexical: list[tuple[str, float]],
         dense: list[tuple[str, float]], keys: dict[str, float] | None = None) -> list[tuple[str, float]]:
    """Candidates of both lists scored by `fusion`, best first; `cosines` (N,) align with `ids`."""
    position = {record_id: n for n, record_id in enumerate(ids)}
    lexical_rank = {record_id: r for r, (record_id, _) in enumerate(lexical)}
    dense_rank = {record_id: r for r, (record_id, _) in enumerate(dense)}
    scored = []
    for record_id in dict.fromkeys([*dense_rank, *lexical_rank]):
        if record_id not in position:  # indexed after the vectors were read: next recall sees it
            continue
        key = (keys or {}).get(record_id, 0.0)
        scored.append((record_id, fusion.score(float(cosines[position[record_id]]), lexical_rank.get(record_id),
                                               dense_rank.get(record_id), key)))
    return sorted(scored, key=lambda kv: (-kv[1], position[kv[0]]))
