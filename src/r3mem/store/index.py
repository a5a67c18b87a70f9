"""What recall searches for each record: a body of words and a dense vector (`IndexEntry`).

Every record gets one index row, written in the transaction that writes the record (and
removed with it, by a cascading foreign key): `body` is what lexical recall matches and
`vector` what dense recall compares. A record that kept its text is indexed from that text.
A memory-only record (`store_text=False`) is indexed from what its memory gives back: the
tokens each memory slot pools, read back by greedy pursuit (`r3mem.decode.slot_bags`), one
detokenised run per slot (`r3mem.store.indexing` makes entries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOURCES = ("text", "memory")


@dataclass(frozen=True)
class IndexEntry:
    """One record's index row; `vector` is None until an embedder has read `body`."""

    record_id: str
    body: str
    source: str  # "text": the stored text; "memory": words read back from the memory
    vector: bytes | None = None  # fp16 unit vector
    embedder: str | None = None  # the `Embedder.name` that wrote `vector`


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).astype("<f2").tobytes()


def decode_vectors(blobs: list[bytes]) -> np.ndarray:
    """(n, d) float32 from n fp16 blobs of one width."""
    if not blobs:
        return np.zeros((0, 0), np.float32)
    return np.frombuffer(b"".join(blobs), "<f2").reshape(len(blobs), -1).astype(np.float32)
