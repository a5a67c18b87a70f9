"""L_cyc: mem(expand(mem(x))) ~= mem(x), for the window's first segment.

The expansion is the teacher-forced reconstruction distribution, passed on as straight-through
one-hot embeddings (hard tokens forward, soft gradient back); the target memory is detached.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from r3mem.base_model import embedding_table
from r3mem.train.losses import WindowPass, register


@register("cyc")
def cycle(batch: WindowPass) -> dict[str, Tensor]:
    net, memory, shape = batch.network, batch.memories[0], batch.segments[0].shape
    probs = batch.recs[0].kept_logits.softmax(-1)  # (B*L, V)
    hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    tokens = (hard + probs - probs.detach()) @ embedding_table(net.causal_lm)
    again = net.write_embeds(net.initial(shape[0], memory.shape[1]), tokens.view(*shape, -1))
    scale = net.projection.gain.detach().pow(2).mean()
    return {"cyc": F.mse_loss(again, memory.detach()) / scale}
