"""A stand-in embedder for unit tests: hashed bag of words, so dense recall runs without MiniLM."""

from __future__ import annotations

import hashlib

import numpy as np

from r3mem.bm25 import words


class HashEmbedder:
    """Unit vectors of hashed word counts: texts sharing words are near, others orthogonal-ish."""

    name = "hash-64"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in words(text):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-8)
        return out
