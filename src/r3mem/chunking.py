"""Which memory slot each token of a segment belongs to: one layout for writing and reading.

`chunk_pool` folds chunk j's token embeddings into memory slot j; pool guidance holds an
expansion's chunk j to slot j. Both must cut a segment the same way, so the rule lives here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def chunk_index(lengths: Tensor, width: int, m: int) -> Tensor:
    """(B,) segment lengths -> (B, width) slot of each position, -1 past a row's length.

    Position t of an n-token segment belongs to chunk floor(t*m/n), so a chunk covers about
    n/m tokens whatever the segment length.
    """
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)  # (1, width)
    rows = lengths.long().unsqueeze(1)  # (B, 1)
    chunk = torch.div(positions * m, rows.clamp(min=1), rounding_mode="floor")
    return torch.where(positions < rows, chunk, -1)
