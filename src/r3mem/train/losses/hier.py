"""L_hier: -log p(q | mem(c)), the paper's hierarchical context -> query pairs.

A sentence from its paragraph's memory, the sentence's entities (joined by "; ") from the
sentence's memory. The query sentence is not named to the reader: the loss rewards a paragraph
memory that keeps every sentence. Paragraphs and sentences are also reconstructed from their
own memories (markers `paragraph`, `sentence`), reported as `rec_units` and weighted as L_rec.
"""

from __future__ import annotations

import math

from torch import Tensor

from r3mem.train.losses import WindowPass, pad, register


@register("hier")
def hierarchy(batch: WindowPass) -> dict[str, Tensor]:
    if not batch.hier:
        return {}
    net, hier, m = batch.network, batch.hier, batch.hier_m
    device = net.initial_memory.device
    para, para_mask = pad([h[0] for h in hier], device)
    sent, sent_mask = pad([h[1] for h in hier], device)
    mem_p = net.write(net.initial(len(hier), m), para, para_mask)
    m_s = max(1, math.ceil(m * sent.shape[1] / max(1, para.shape[1])))
    mem_s = net.write(net.initial(len(hier), m_s), sent, sent_mask)
    rec_p = net.read(mem_p, para, para_mask, marker="paragraph")
    rec_s = net.read(mem_s, sent, sent_mask, marker="sentence")
    hier_loss = net.read(mem_p, sent, sent_mask, marker="sentence")
    out = {"rec_units": (rec_p.nll_sum + rec_s.nll_sum) / (rec_p.n_tokens + rec_s.n_tokens)}
    with_entities = [i for i, h in enumerate(hier) if h[2]]
    total, count = hier_loss.nll_sum, hier_loss.n_tokens
    if with_entities:
        ents, ent_mask = pad([hier[i][2] for i in with_entities], device)
        ent = net.read(mem_s[with_entities], ents, ent_mask, marker="entity")
        total, count = total + ent.nll_sum, count + ent.n_tokens
    out["hier"] = total / count
    return out
