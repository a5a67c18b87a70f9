"""Beam search for a known length: r3mem's own loop, so that every row it pays for is needed.

transformers' `generate` expands the prefix to one copy per beam before its first pass, so the memory
prefix is read `beams` times; here it is read once per memory and its key/value cache is then shared
out to the beams. Each step is the search `generate` runs for a fixed length and no end token (the
`beams` best continuations of each memory's beams, ranked by summed log-probability after the
charges), so the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformers import PreTrainedModel

from r3mem import bounds
from r3mem.decode.reader import ReorderedCache

# Charges each row's candidate scores (rows, V) given the tokens written so far (rows, t) and the
# memory each row expands (rows,); pool guidance is one.
Charge = Callable[[Tensor, Tensor, Tensor], Tensor]


@torch.no_grad()
def beam_search(lm: PreTrainedModel, prefix: Tensor, n_tokens: int, beams: int, charge: Charge | None = None,
                resume: Callable[[], None] | None = None) -> Tensor:
    """(B, P, d) prefix embeddings -> (B, n_tokens) ids: each memory's best of `beams` beams.

    The request's deadline (`r3mem.bounds`) is checked between steps, where other work may run;
    `resume` then restores what this search needs (its adapter).
    """
    batch = prefix.shape[0]
    if n_tokens == 0:
        return torch.empty(batch, 0, dtype=torch.long, device=prefix.device)
    cache = ReorderedCache()
    out = lm(inputs_embeds=prefix.to(lm.dtype), cache=cache, use_cache=True, logits_to_keep=1)
    memory_of = torch.arange(batch, device=prefix.device)  # (rows,) the memory each row expands
    scores = torch.zeros(batch, device=prefix.device)  # (rows,) each beam's log-probability so far
    written = torch.empty(batch, 0, dtype=torch.long, device=prefix.device)  # (rows, t)
    for step in range(n_tokens):
        bounds.step(resume)
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (rows, V)
        if charge is not None:
            logp = charge(written, logp, memory_of)
        vocab = logp.shape[1]
        candidates = (scores.unsqueeze(1) + logp).view(batch, -1)  # (B, beams so far * V)
        scores, index = candidates.topk(min(beams, candidates.shape[1]), dim=1)  # best first
        kept = scores.shape[1]
        rows_per_memory = candidates.shape[1] // vocab
        parent = (torch.arange(batch, device=index.device).unsqueeze(1) * rows_per_memory + index // vocab).view(-1)
        token = (index % vocab).view(-1)
        scores = scores.reshape(-1)
        memory_of = torch.arange(batch, device=index.device).repeat_interleave(kept)
        written = torch.cat([written[parent], token.unsqueeze(1)], dim=1)
        if step + 1 < n_tokens:
            cache.reorder_cache(parent)
            out = lm(input_ids=token.unsqueeze(1), cache=cache, use_cache=True)
    return written.view(batch, -1, n_tokens)[:, 0]
