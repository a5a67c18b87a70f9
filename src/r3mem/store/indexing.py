"""Making index entries: a record's body from its text, or from what its memory gives back.

A memory-only record's body is the tokens each memory slot pools, read back by greedy pursuit
(`r3mem.decode.slot_bags`), one detokenised run per slot. That costs a few matrix products against the
vocabulary (tens of milliseconds a record on a CPU), no generation, and holds no more than the
memory itself does.
"""

from __future__ import annotations

import torch

from r3mem.api import R3Mem
from r3mem.chunking import chunk_index
from r3mem.decode.slot_bags import recover_bags
from r3mem.store.embedder import Embedder
from r3mem.store.index import IndexEntry, encode_vector
from r3mem.store.record import Record


@torch.no_grad()
def memory_words(r3: R3Mem, record: Record) -> str:
    """The words a record's memory pools, slot by slot, as text (order within a slot is pursuit's)."""
    snapshots = record.memory_tensor().float()  # (S, m, d): one memory per segment
    table = r3.token_embeddings()  # (V, d)
    runs = []
    for memory, n in zip(snapshots, record.segment_tokens, strict=True):
        m = memory.shape[0]
        chunk = chunk_index(torch.tensor([n]), n, m)[0]  # (n,) slot of each position
        counts = torch.stack([(chunk == j).sum() for j in range(m)])  # (m,)
        sums = memory * counts.clamp(min=1).float().sqrt().unsqueeze(-1)  # undo chunk_pool's 1/sqrt(count)
        for bag in recover_bags(sums, counts, table).tolist():
            ids = [t for t in bag if t >= 0]
            if ids:
                runs.append(r3.detokenize(ids).strip())
    return " ".join(run for run in runs if run)


def entries(records: list[Record], embedder: Embedder, r3: R3Mem | None) -> list[IndexEntry]:
    """Index rows for `records`, texts embedded in one batch; memory-only records need `r3`
    (without it they are left out, and recall indexes them once a model is loaded)."""
    bodies: list[tuple[Record, str, str]] = []
    for record in records:
        if record.text is not None:
            bodies.append((record, record.text, "text"))
        elif r3 is not None:
            bodies.append((record, memory_words(r3, record), "memory"))
    if not bodies:
        return []
    vectors = embedder.encode([body or " " for _, body, _ in bodies])
    return [IndexEntry(record.id, body, source, encode_vector(vector), embedder.name)
            for (record, body, source), vector in zip(bodies, vectors, strict=True)]
