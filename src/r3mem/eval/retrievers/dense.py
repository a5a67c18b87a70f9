"""Dense retrieval with all-MiniLM-L6-v2 over raw texts: the embedding baseline for `eval qa`.

The encoder is the store's own (`r3mem.store.embedder`); this wrapper keeps the retriever
interface the QA harness uses: `add(text)` and `search(query, k) -> [(index, score)]`, exact
cosine similarity, ties to the earlier text.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from r3mem.store.embedder import PACKAGE, MiniLM, default_embedder, model_dir

Encoder = MiniLM  # the name this module exported before the encoder moved into the store
shared_encoder = default_embedder
__all__ = ["PACKAGE", "DenseRetriever", "Encoder", "model_dir", "shared_encoder"]


class DenseRetriever:
    """Exact cosine-similarity search over embedded texts; texts can be added one at a time."""

    def __init__(self, texts: Iterable[str] = (), encoder: MiniLM | None = None) -> None:
        self.encoder = encoder or shared_encoder()
        texts = list(texts)
        self.vectors = self.encoder.encode_tensor(texts) if texts else torch.empty(0, 0)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def add(self, text: str) -> None:
        vector = self.encoder.encode_tensor([text])
        self.vectors = torch.cat([self.vectors, vector]) if len(self) else vector

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` texts by cosine similarity; ties go to the earlier text."""
        if not len(self):
            return []
        scores = (self.vectors @ self.encoder.encode_tensor([query])[0]).tolist()
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [(i, scores[i]) for i in ranked]
