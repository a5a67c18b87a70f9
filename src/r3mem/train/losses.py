"""The training objective: L_rec, L_lm, L_hier and L_cyc as one module.

Wrapping every loss in one `forward` lets Accelerate (DDP) see a single forward call
per micro-batch, so gradients of both adapters and the memory tables synchronise.

- L_rec: -log p(x | mem(x)) for each segment of a window (marker `segment`) and for
  paragraphs and sentences (markers `paragraph`, `sentence`).
- L_lm: -log p(segment t+1 | memory after segments 1..t) (marker `continue`), averaged over
  the window's segments after the first. With windows of two segments the memory only ever
  has to carry one segment forward; longer windows train the recurrence itself.
- L_hier: -log p(q | mem(c)): a sentence from its paragraph's memory, the sentence's
  entities (joined by "; ") from the sentence's memory. The query sentence is not
  named to the reader: the loss rewards a paragraph memory that keeps every sentence.
- Scheduled sampling (optional): L_rec may read, at positions the caller marks, the model's
  own teacher-forced guess instead of the source token, while still scoring the source. A
  free-running expansion reads its own slips; trained on gold prefixes only, it follows a
  slip (a skipped word shifts every later token); this aims to teach it to get back in step.
  Two passes (Mihaylova & Martins, 2019): one without gradient to guess, one to learn. On the
  shipped run it made things worse (README, *Training*); it stays off by default.
- L_cyc: mem(expand(mem(x))) ~= mem(x). The expansion is the teacher-forced
  reconstruction distribution, passed on as straight-through one-hot embeddings
  (hard tokens forward, soft gradient back); the target memory is detached.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r3mem.base_model import embedding_table
from r3mem.memory_net import MemoryNetwork


def pad(batch: list[list[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-pad id lists to (B, T) ids and a (B, T) mask."""
    width = max(1, max(len(x) for x in batch))
    ids = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(batch), width, dtype=torch.long, device=device)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


class Objective(nn.Module):
    """Computes every weighted loss of one micro-batch; returns a dict of scalars."""

    def __init__(self, network: MemoryNetwork, weights: dict[str, float], window_segments: int = 2) -> None:
        super().__init__()
        self.network = network
        self.weights = weights
        self.window_segments = window_segments

    def forward(self, windows: Tensor, m: int, hier: list[tuple[list[int], list[int], list[int]]] | None,
                hier_m: int, own_prefix: Tensor | None = None) -> dict[str, Tensor]:
        """`windows` (B, window_segments * L): consecutive segments, written into memory in turn.

        `own_prefix` (B, window_segments, L-1), bool: prefix positions of L_rec that read the
        model's own guess instead of the source token (scheduled sampling); None reads the source.
        """
        net, w = self.network, self.weights
        segments = windows.view(windows.shape[0], self.window_segments, -1).unbind(1)  # (B, L) each
        memories, memory = [], net.initial(windows.shape[0], m)
        for segment in segments:
            memory = net.write(memory, segment)  # (B, m, d)
            memories.append(memory)
        prefixes: list[Tensor | None] = [None] * len(segments)
        if own_prefix is not None:
            prefixes = [torch.where(own_prefix[:, i], net.guess(mem, seg)[:, :-1], seg[:, :-1])
                        for i, (mem, seg) in enumerate(zip(memories, segments, strict=True))]
        recs = [net.read(mem, seg, keep_logits=i == 0 and w["cyc"] > 0, prefix_ids=prefix)
                for i, (mem, seg, prefix) in enumerate(zip(memories, segments, prefixes, strict=True))]
        n_tokens = sum(r.n_tokens for r in recs)
        out: dict[str, Tensor] = {"rec": torch.stack([r.nll_sum for r in recs]).sum() / n_tokens}
        out["acc"] = torch.tensor(sum(r.n_correct for r in recs) / n_tokens)
        if w["lm"] > 0:
            pairs = zip(memories[:-1], segments[1:], strict=True)  # memory of 1..t, segment t+1
            lm = [net.read(mem, seg, marker="continue").loss for mem, seg in pairs]
            out["lm"] = torch.stack(lm).mean()
        if w["cyc"] > 0:
            out["cyc"] = self.cycle(memories[0], recs[0].kept_logits, segments[0].shape)
        if w["hier"] > 0 and hier:
            out.update(self.hierarchy(hier, hier_m))
        total = sum(w[k] * v for k, v in out.items() if k in w) + (
            w["rec"] * out["rec_units"] if "rec_units" in out else 0
        )
        out["total"] = cast(Tensor, total)  # a sum of tensors; `sum` types its 0 start as int
        return out

    def cycle(self, memory: Tensor, logits: Tensor, shape: torch.Size) -> Tensor:
        net = self.network
        probs = logits.softmax(-1)  # (B*L, V)
        hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        tokens = (hard + probs - probs.detach()) @ embedding_table(net.causal_lm)
        again = net.write_embeds(net.initial(shape[0], memory.shape[1]), tokens.view(*shape, -1))
        scale = net.projection.gain.detach().pow(2).mean()
        return F.mse_loss(again, memory.detach()) / scale

    def hierarchy(self, hier: list[tuple[list[int], list[int], list[int]]], m: int) -> dict[str, Tensor]:
        net = self.network
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
