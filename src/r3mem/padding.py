"""Right-padding of token id lists: the one helper training and the store's batched passes share."""

from __future__ import annotations

import torch
from torch import Tensor


def pad(batch: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-pad id lists to (B, T) ids and a (B, T) mask (T at least 1)."""
    width = max(1, max(len(x) for x in batch))
    ids = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
