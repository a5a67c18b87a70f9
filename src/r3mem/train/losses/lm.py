"""L_lm: -log p(segment t+1 | memory after segments 1..t) (marker `continue`).

Averaged over the window's segments after the first. With windows of two segments the memory
only ever has to carry one segment forward; longer windows train the recurrence itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r3mem.train.losses import WindowPass, register


@register("lm")
def continuation(batch: WindowPass) -> dict[str, Tensor]:
    pairs = zip(batch.memories[:-1], batch.segments[1:], strict=True)  # memory of 1..t, segment t+1
    return {"lm": torch.stack([batch.network.read(mem, seg, marker="continue").loss for mem, seg in pairs]).mean()}
