"""L_rec: -log p(x | mem(x)) for each segment of a window (marker `segment`).

Scheduled sampling (optional, `Objective(own_prefix=...)`): the read may see, at positions the
caller marks, the model's own teacher-forced guess instead of the source token, while still
scoring the source (Mihaylova & Martins, 2019). On the shipped run it made things worse
(docs/training.md); it stays off by default.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r3mem.train.losses import WindowPass, register


@register("rec")
def reconstruction(batch: WindowPass) -> dict[str, Tensor]:
    n_tokens = sum(r.n_tokens for r in batch.recs)
    return {"rec": torch.stack([r.nll_sum for r in batch.recs]).sum() / n_tokens,
            "acc": torch.tensor(sum(r.n_correct for r in batch.recs) / n_tokens)}
