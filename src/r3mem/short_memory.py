"""The model calls a record store makes: many short texts into memories, a query read after each.

A store holds many small units (turns, sentences, entities). Each gets its own length over the
ratio in memory vectors, not a whole segment's (a 20-token sentence at ratio 4 gets 5 vectors),
and units of one size share a padded forward pass. Recall by query likelihood reads the query
after each candidate's memory, memories of one size in one batch. `R3Mem.compress_units` and
`R3Mem.query_nll` expose these, so the store never reaches into the network.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from r3mem import bounds
from r3mem.memory_file import Memory
from r3mem.padding import pad

if TYPE_CHECKING:
    from r3mem.api import R3Mem

COMPRESS_BATCH = 16  # single-segment units compressed together in one padded forward pass
SCORE_BATCH = 32  # memories a query is read after in one pass


def unit_memory_tokens(r3: R3Mem, n_tokens: int, ratio: float) -> int:
    """m for a unit of `n_tokens`: its own length over the ratio (as training samples it), at most a segment's."""
    return min(r3.config.memory_tokens_for(ratio), max(1, math.ceil(n_tokens / ratio)))


@torch.no_grad()
def compress_units(r3: R3Mem, texts: list[str], ratio: float) -> list[Memory]:
    """One `Memory` per text; texts that fit one segment share padded passes, longer ones recur."""
    out: list[Memory | None] = [None] * len(texts)
    token_ids = [r3.tokenize(t) for t in texts]
    groups: dict[int, list[int]] = {}  # m -> indexes of single-segment texts
    for i, ids in enumerate(token_ids):
        if 0 < len(ids) <= r3.config.segment_len:
            groups.setdefault(unit_memory_tokens(r3, len(ids), ratio), []).append(i)
    net = r3.network
    for m, members in groups.items():
        for start in range(0, len(members), COMPRESS_BATCH):
            batch = members[start : start + COMPRESS_BATCH]
            padded, mask = pad([token_ids[i] for i in batch], r3.device)  # (B, T)
            snaps = net.write(net.initial(len(batch), m), padded, mask)  # (B, m, d)
            for row, i in enumerate(batch):
                out[i] = Memory(snapshots=snaps[row : row + 1].to(torch.float16).cpu(),
                                token_counts=[len(token_ids[i])], segment_len=r3.config.segment_len,
                                model_fingerprint=r3.base.fingerprint,
                                checkpoint_fingerprint=r3.checkpoint_fingerprint, model_name=r3.base.name)
            bounds.step()  # a request's deadline, and the service's cheap calls, between passes
    for i, text in enumerate(texts):
        if out[i] is None:
            out[i] = r3.compress(text, ratio=ratio)  # longer than a segment: the recurrent path
    return out  # type: ignore[return-value]


@torch.no_grad()
def query_nll(r3: R3Mem, memories: list[torch.Tensor], query: str) -> list[float]:
    """Mean NLL per query token read after each memory (m, d); memories of one m share a pass."""
    ids = torch.tensor([r3.tokenize(query)], device=r3.device)  # (1, Q)
    nlls = [0.0] * len(memories)
    groups: dict[int, list[int]] = {}
    for i, memory in enumerate(memories):
        groups.setdefault(int(memory.shape[0]), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), SCORE_BATCH):
            batch = members[start : start + SCORE_BATCH]
            memory = torch.stack([memories[i] for i in batch]).to(r3.device, torch.float32)  # (B, m, d)
            target = ids.expand(len(batch), -1)  # (B, Q)
            stats = r3.network.read(memory, target, marker="continue", keep_logits=True)
            nll = F.cross_entropy(stats.kept_logits, target.reshape(-1), reduction="none")  # (B * Q,)
            for i, value in zip(batch, nll.view(len(batch), -1).mean(1).tolist(), strict=True):
                nlls[i] = value
            bounds.step()  # a request's deadline, and the service's cheap calls, between batches
    return nlls
