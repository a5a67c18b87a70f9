"""Okapi BM25 over raw texts: the store's lexical recall, and the baseline memory recall is measured against.

Written out here (about 40 lines) instead of taken from a package so the score is
hand-checkable and adds no dependency. With N documents, n(t) of them holding term t,
f(t, D) the count of t in D, |D| its length in words and avgdl the mean length:

    idf(t)      = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))          (Lucene's, never negative)
    score(D, Q) = sum over query words t (repeats count) of
                  idf(t) * f(t, D) * (k1 + 1) / (f(t, D) + k1 * (1 - b + b * |D| / avgdl))

Words are lowercase runs of letters and digits (`\\w+`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25Retriever:
    """Exact BM25 ranking; documents can be added one at a time (statistics stay current)."""

    def __init__(self, texts: Iterable[str] = (), k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.counts: list[Counter[str]] = []
        self.lengths: list[int] = []
        self.df: Counter[str] = Counter()
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, text: str) -> None:
        counts = Counter(words(text))
        self.counts.append(counts)
        self.lengths.append(sum(counts.values()))
        self.df.update(counts.keys())

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1.0 + (len(self) - n + 0.5) / (n + 0.5))

    def score(self, query: str, index: int) -> float:
        return self._score(words(query), index, self._avgdl())

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` documents by score; ties go to the earlier document."""
        terms, avgdl = words(query), self._avgdl()
        scored = [(i, self._score(terms, i, avgdl)) for i in range(len(self))]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored[:k]

    def _avgdl(self) -> float:
        return (sum(self.lengths) / len(self) if self.counts else 0.0) or 1.0

    def _score(self, terms: list[str], index: int, avgdl: float) -> float:
        counts = self.counts[index]
        norm = self.k1 * (1.0 - self.b + self.b * self.lengths[index] / avgdl)
        total = 0.0
        for term in terms:
            f = counts.get(term, 0)
            if f:
                total += self.idf(term) * f * (self.k1 + 1.0) / (f + norm)
        return total
