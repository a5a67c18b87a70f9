"""Which tokens a memory slot holds, read back from the slot alone by greedy pursuit.

A slot is mostly its chunk's token embeddings summed (and divided by sqrt(count), see
`memory_net.chunk_pool`), plus a small gated write state. 576-dimensional embeddings of a 49k
vocabulary are near enough to orthogonal that the sum gives its terms back: take the token whose
embedding is nearest the remaining sum, subtract it, repeat once per token of the chunk. On 8
windows of training text with the shipped weights (`scripts/probe_pool_guidance.py`'s windows) this
recovered 96.9% of each chunk's tokens at ratio 8 and 97.4% at ratio 4, where ranking every token
by its agreement with the slot once (no subtraction) found 52.5% and 65.3%. The bag says nothing
about order: that is left to the reader (`r3mem.decode.pool_guidance` uses the bag to keep it honest).
"""

from __future__ import annotations

import torch
from torch import Tensor

# slots pursued at once: each holds a (rows, vocabulary) score matrix, ~200 MB at 49k tokens
_BLOCK = 1024


@torch.no_grad()
def recover_bags(sums: Tensor, counts: Tensor, embeddings: Tensor) -> Tensor:
    """(N, d) chunk sums and (N,) token counts -> (N, max count) token ids, -1 past each count.

    Each row lists the tokens greedy pursuit finds in its sum, a token as often as it was
    found (a chunk may hold a word twice). `embeddings` is the (V, d) input-embedding table."""
    if sums.ndim != 2 or counts.shape != sums.shape[:1]:
        raise ValueError(f"need (N, d) sums and (N,) counts, got {tuple(sums.shape)} and {tuple(counts.shape)}")
    table = embeddings.float()
    square_norms = table.pow(2).sum(-1)  # (V,)
    counts = counts.long()
    width = int(counts.max()) if counts.numel() else 0
    bags = torch.full((sums.shape[0], width), -1, dtype=torch.long, device=sums.device)
    for start in range(0, sums.shape[0], _BLOCK):
        residual = sums[start:start + _BLOCK].float().clone()  # (n, d)
        live_counts = counts[start:start + _BLOCK]
        for i in range(width):
            live = live_counts > i  # (n,)
            # nearest embedding to the residual: argmin ||r - e||^2 = argmax 2 r.e - ||e||^2
            pick = (2 * residual @ table.T - square_norms).argmax(-1)  # (n,)
            bags[start:start + _BLOCK, i] = torch.where(live, pick, -1)
            residual -= table[pick] * live.unsqueeze(-1)
    return bags


def left_in_bag(bags: Tensor, written: Tensor, written_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, width) bags less the tokens already written -> (rows, width) token ids and (rows, width)
    1.0 where that token is still in its bag (once per distinct token), else 0.0.

    `written` (rows, T) are token ids, `written_mask` (rows, T) marks those that belong to the bag's
    chunk; -1 pads a bag. A token written as often as its bag holds it is no longer in the bag."""
    valid = bags >= 0
    same = (bags.unsqueeze(2) == bags.unsqueeze(1)) & valid.unsqueeze(1)  # (rows, width, width)
    held = same.sum(2)  # how often each entry's token is in its bag
    used = ((bags.unsqueeze(2) == written.unsqueeze(1)) & written_mask.unsqueeze(1)).sum(2)  # (rows, width)
    first = ~torch.tril(same, diagonal=-1).any(2)  # no earlier entry holds the same token
    return bags.clamp(min=0), (valid & first & (held > used)).float()
