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

Long chunks (8 or 16 tokens at ratios 8 and 16) are another matter: a beam must hold the right path
for many steps before the chunk's charge arrives, and 4 beams often lose it. So a share `spread` of
the distance is paid as the chunk is written: each earlier token of a chunk is charged `spread` times
how much it moves the chunk's remainder R away from zero, (||R - e_v||^2 - ||R||^2) / count, and the
last token pays the rest. The charges telescope, so a chunk still pays `strength` times its final
distance in all, whatever `spread` is; only when it pays changes. On training windows (4 beams,
strength 4) spread 0 / 0.1 / 0.25 / 0.5 / 1 gave position-wise 0.30 / 0.38 / 0.46 / 0.31 / 0.31 at
ratio 8 (8 windows; 0.364 / 0.428 at 0 / 0.25 on 16), and 0.813 / 0.806 at 0 / 0.25 at ratio 4,
with the step-2200 weights; with step 2580's, on 16 windows, 0 / 0.25 gave 0.403 / 0.515 at ratio
8 and 0.863 / 0.876 at ratio 4 (`scripts/probe_pool_guidance.py --spreads 0,0.25`).

Guidance alone still lets a beam write a chunk's words in a near-miss form (a synonym, a near
embedding) or borrow the next chunk's word early. Greedy pursuit reads each slot's bag of tokens back
almost whole (`r3mem.decode.slot_bags`: 97% of tokens at ratios 4 and 8), so every token of a chunk that is
not left in its recovered bag is charged a flat `bag` nats as it is written. The charge is soft, so a
beam can still write a token the pursuit missed. On 16 training windows at ratio 8, 16 beams,
strength 4: position-wise 0.713 without it, 0.782 at 4 nats, 0.722 at 6, 0.684 when the bag is a
hard constraint (the 3% the pursuit gets wrong are then forced in).

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
from r3mem.decode.options import DEFAULT_BAG, DEFAULT_SPREAD
from r3mem.decode.slot_bags import recover_bags, remaining_counts


class PoolGuide(LogitsProcessor):
    """Adds the pooled-memory agreement of each next token to the generation scores.

    `memory` (B, m, d) holds the snapshots being expanded, `lengths` each row's segment length
    and `embeddings` (V, d) the reader's input-embedding table; `spread` is the share of a chunk's
    distance paid before its last token and `bag` the nats charged to a token its chunk's recovered
    bag does not hold (0: no bag). Generation may run several rows per memory (beams,
    samples): they are taken to be consecutive, as `generate` lays them out.
    """

    def __init__(self, memory: Tensor, lengths: Sequence[int], embeddings: Tensor, strength: float,
                 spread: float = DEFAULT_SPREAD, bag: float = DEFAULT_BAG) -> None:
        batch, slots, _ = memory.shape
        if len(lengths) != batch or min(lengths) < 1:
            raise ValueError(f"need one positive segment length per memory row, got {list(lengths)!r}")
        if not 0 <= spread <= 1:
            raise ValueError(f"spread must be from 0 to 1, got {spread!r}")
        if not bag >= 0:
            raise ValueError(f"bag must be a charge of 0 or more nats, got {bag!r}")
        self.bag = bag
        self.strength = strength
        self.spread = spread
        self.embeddings = embeddings.float()  # (V, d)
        self.square_norms = self.embeddings.pow(2).sum(-1)  # (V,)
        self.lengths = torch.tensor(list(lengths), device=memory.device)  # (B,)
        # (B, width) chunk of each position, as `chunk_pool` cut it; -1 past a row's length
        self.chunk_of = chunk_index(self.lengths, int(self.lengths.max()), slots)
        counts = torch.stack([(self.chunk_of == j).sum(1) for j in range(slots)], 1).clamp(min=1)  # (B, m)
        self.counts = counts.float()
        self.targets = memory.float() * self.counts.sqrt().unsqueeze(-1)  # (B, m, d) chunk sums
        # (B, m, width) the tokens pursuit reads in each slot, -1 padded; only when charged for
        self.bags = (recover_bags(self.targets.reshape(batch * slots, -1), counts.reshape(-1), self.embeddings)
                     .reshape(batch, slots, -1) if bag else None)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, step = input_ids.shape
        batch = self.lengths.shape[0]
        memory_of = torch.arange(rows, device=scores.device) // max(1, rows // batch)  # (rows,)
        if step >= self.chunk_of.shape[1]:
            return scores
        chunk = self.chunk_of[memory_of, step]  # (rows,)
        following = self.chunk_of[memory_of, step + 1] if step + 1 < self.chunk_of.shape[1] else None
        # a chunk's last token pays its whole distance from the slot, less what earlier tokens paid
        last = (chunk >= 0) & (True if following is None else following != chunk)
        slot = chunk.clamp(min=0)
        full = self.targets[memory_of, slot]  # (rows, d): the chunk's sum as the slot holds it
        remainder = full
        written = self.chunk_of[memory_of, :step] == slot.unsqueeze(1)  # (rows, step)
        if step:
            remainder = full - (self.embeddings[input_ids] * written.unsqueeze(-1)).sum(1)
        count = self.counts[memory_of, slot].unsqueeze(1)  # (rows, 1)
        left = remainder.pow(2).sum(-1, keepdim=True)  # ||R||^2
        moved = self.square_norms - 2 * remainder @ self.embeddings.T  # ||R - e_v||^2 - ||R||^2
        paid = self.spread * (left - full.pow(2).sum(-1, keepdim=True))  # what this chunk's earlier tokens paid
        charge = torch.where(last.unsqueeze(1), left + moved - paid, self.spread * moved) / count
        charge = self.strength * charge
        if self.bags is not None:
            left = remaining_counts(self.bags[memory_of, slot], input_ids, written, self.embeddings.shape[0])
            charge = charge + self.bag * (left <= 0)
        return cast(torch.FloatTensor, scores - charge * (chunk >= 0).unsqueeze(1))
