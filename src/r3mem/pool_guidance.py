"""Pool-guided expansion: hold each regenerated chunk to the tokens its memory slot pools.

A memory slot is its chunk's pooled token embeddings plus a small gated write state
(`MemoryProjection`): in the shipped weights the pooled part has norm ~3.1 and the write part
~0.85, so a slot still says, almost literally, which tokens its chunk of the segment holds.
The reader uses that only as well as teacher forcing taught it, and a free-running expansion
drifts: it drops one word, then carries on one position out of step, and every later token
counts as wrong (position-wise accuracy 0.33 at ratio 4 against 0.88 teacher-forced).

This processor scores each chunk as a whole when its last token is chosen: with R the slot
scaled back to a sum (times sqrt(count), undoing `chunk_pool`'s division) minus the embeddings
already written in the chunk, choosing v costs `strength * ||R - e_v||^2 / count` (the squared
distance, in the pooled units the slot lives in, between the chunk as written and its slot). A
chunk that dropped or repeated a word lies several units further than the source's own (about 4.7
against 0.7 on held-out text; the source's is the nearer in 99.5% of the chunks at and after a
dropped word), so beam search keeps the beams that stay in step, and the reader still orders the
words within each chunk. Scoring every token by its share of that distance instead (the same sum
over a chunk, spread over its steps) was worse at ratio 4 (position-wise 0.79 / 0.72 against 0.81
at strengths 2 / 4) and no better at ratio 8: one embedding is too like others for its share to
say whether it belongs (only 66% of a chunk's tokens rank among its top-scoring tokens).

The chunk layout is `chunk_pool`'s: position t of an n-token segment in an m-slot memory belongs
to chunk floor(t*m/n), so each row needs its own segment length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor
from transformers import LogitsProcessor

from r3mem.chunking import chunk_index


class PoolGuide(LogitsProcessor):
    """Adds the pooled-memory agreement of each next token to the generation scores.

    `memory` (B, m, d) holds the snapshots being expanded, `lengths` each row's segment length
    and `embeddings` (V, d) the reader's input-embedding table. Generation may run several rows
    per memory (beams, samples): they are taken to be consecutive, as `generate` lays them out.
    """

    def __init__(self, memory: Tensor, lengths: Sequence[int], embeddings: Tensor, strength: float) -> None:
        batch, slots, _ = memory.shape
        if len(lengths) != batch or min(lengths) < 1:
            raise ValueError(f"need one positive segment length per memory row, got {list(lengths)!r}")
        self.strength = strength
        self.embeddings = embeddings.float()  # (V, d)
        self.square_norms = self.embeddings.pow(2).sum(-1)  # (V,)
        self.lengths = torch.tensor(list(lengths), device=memory.device)  # (B,)
        # (B, width) chunk of each position, as `chunk_pool` cut it; -1 past a row's length
        self.chunk_of = chunk_index(self.lengths, int(self.lengths.max()), slots)
        counts = torch.stack([(self.chunk_of == j).sum(1) for j in range(slots)], 1).clamp(min=1)  # (B, m)
        self.counts = counts.float()
        self.targets = memory.float() * self.counts.sqrt().unsqueeze(-1)  # (B, m, d) chunk sums

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, step = input_ids.shape
        batch = self.lengths.shape[0]
        memory_of = torch.arange(rows, device=scores.device) // max(1, rows // batch)  # (rows,)
        if step >= self.chunk_of.shape[1]:
            return scores
        chunk = self.chunk_of[memory_of, step]  # (rows,)
        following = self.chunk_of[memory_of, step + 1] if step + 1 < self.chunk_of.shape[1] else None
        # only a chunk's last token is scored, with the whole chunk's distance from its slot
        last = (chunk >= 0) & (True if following is None else following != chunk)
        slot = chunk.clamp(min=0)
        target = self.targets[memory_of, slot]  # (rows, d)
        if step:
            written = self.chunk_of[memory_of, :step] == slot.unsqueeze(1)  # (rows, step)
            target = target - (self.embeddings[input_ids] * written.unsqueeze(-1)).sum(1)
        count = self.counts[memory_of, slot].unsqueeze(1)  # (rows, 1)
        distance = (target.pow(2).sum(-1, keepdim=True) - 2 * target @ self.embeddings.T + self.square_norms) / count
        return cast(torch.FloatTensor, scores - self.strength * distance * last.unsqueeze(1))
