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
from r3mem.decode.slot_bags import left_in_bag, recover_bags


class PoolGuide(LogitsProcessor):
    """Adds the pooled-memory agreement of each next token to the generation scores.

    `memory` (B, m, d) holds the snapshots being expanded, `lengths` each row's segment length
    and `embeddings` (V, d) the reader's input-embedding table; `spread` is the share of a chunk's
    distance paid before its last token and `bag` the nats charged to a token its chunk's recovered
    bag does not hold (0: no bag). Generation may run several rows per memory (beams,
    samples): `charge` is told which memory each row expands; as a transformers logits processor
    (`__call__`) the rows are taken to be consecutive, as `generate` lays them out.
    """

    def __init__(self, memory: Tensor, lengths: Sequence[int], embeddings: Tensor, strength: float,
                 spread: float = DEFAULT_SPREAD, bag: float = DEFAULT_BAG,
                 product_dtype: torch.dtype = torch.float32) -> None:
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
        # (V, d + 1) rows [e_v, ||e_v||^2]: what a token's charge depends on is one product with this
        # (`charge`), run in `product_dtype` (bfloat16 beside a bfloat16 reader: it is the step's largest product)
        self.augmented = torch.cat([self.embeddings, self.square_norms.unsqueeze(1)], 1).to(product_dtype)
        self.lengths = torch.tensor(list(lengths), device=memory.device)  # (B,)
        # (B, width) chunk of each position, as `chunk_pool` cut it; -1 past a row's length
        self.chunk_of = chunk_index(self.lengths, int(self.lengths.max()), slots)
        counts = torch.stack([(self.chunk_of == j).sum(1) for j in range(slots)], 1).clamp(min=1)  # (B, m)
        self.counts = counts.float()
        self.widest = int(counts.max())  # the longest chunk: no chunk reaches further back than this
        self.targets = memory.float() * self.counts.sqrt().unsqueeze(-1)  # (B, m, d) chunk sums
        # (B, m, width) the tokens pursuit reads in each slot, -1 padded; only when charged for
        self.bags = (recover_bags(self.targets.reshape(batch * slots, -1), counts.reshape(-1), self.embeddings)
                     .reshape(batch, slots, -1) if bag else None)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = input_ids.shape[0]
        memory_of = torch.arange(rows, device=scores.device) // max(1, rows // self.lengths.shape[0])  # (rows,)
        return cast(torch.FloatTensor, self.charge(input_ids, scores, memory_of))

    def charge(self, input_ids: Tensor, scores: Tensor, memory_of: Tensor) -> Tensor:
        """`scores` (rows, V) less each next token's charge, row i expanding memory `memory_of[i]` and
        having written `input_ids[i]` so far."""
        step = input_ids.shape[1]
        if step >= self.chunk_of.shape[1]:
            return scores
        chunk = self.chunk_of[memory_of, step]  # (rows,)
        following = self.chunk_of[memory_of, step + 1] if step + 1 < self.chunk_of.shape[1] else None
        # a chunk's last token pays its whole distance from the slot, less what earlier tokens paid
        last = (chunk >= 0) & (True if following is None else following != chunk)
        active = (chunk >= 0).float()  # rows past their own length are not charged
        slot = chunk.clamp(min=0)
        full = self.targets[memory_of, slot]  # (rows, d): the chunk's sum as the slot holds it
        # only the current chunk's tokens count, and a chunk is at most `widest` tokens long
        recent = input_ids[:, max(0, step - self.widest):].long()
        written = self.chunk_of[memory_of, step - recent.shape[1]:step] == slot.unsqueeze(1)  # (rows, <= widest)
        remainder = full - (self.embeddings[recent] * written.unsqueeze(-1)).sum(1) if step else full  # R, (rows, d)
        count = self.counts[memory_of, slot]  # (rows,)
        left = remainder.pow(2).sum(-1)  # ||R||^2
        paid = self.spread * (left - full.pow(2).sum(-1))  # what this chunk's earlier tokens paid
        # charge(v) = a * moved(v) + b, with moved(v) = ||R - e_v||^2 - ||R||^2 = ||e_v||^2 - 2 R.e_v:
        # the spread share of moved before the last token, the rest (left + moved - paid) at it
        a = self.strength * active * torch.where(last, 1.0, self.spread) / count
        b = self.strength * active * torch.where(last, left - paid, 0.0) / count
        if self.bags is not None:
            b = b + self.bag * active  # every token pays the bag charge; tokens still in the bag get it back
        # one product gives every row's charge over the vocabulary; the part shared by a row's tokens
        # (b) stays in float32, since beams are ranked against each other by it
        shifted = scores - b.unsqueeze(1)
        coefficients = torch.cat([-2 * a.unsqueeze(1) * remainder, a.unsqueeze(1)], 1).to(self.augmented.dtype)
        if self.augmented.dtype == shifted.dtype:
            out = torch.addmm(shifted, coefficients, self.augmented.T, alpha=-1)
        else:
            out = shifted.sub_(coefficients @ self.augmented.T)
        if self.bags is not None:
            tokens, refund = left_in_bag(self.bags[memory_of, slot], recent, written)
            out.scatter_add_(1, tokens, refund * self.bag * active.unsqueeze(1))
        return out
