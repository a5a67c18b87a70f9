"""The long-context LM: the plain base LM reading [context memory ; raw tokens].

One code path serves training (`r3mem.train.context_distill`), the benchmark
(`r3mem eval perplexity`) and the product (`R3Mem.generate`, sessions that fold what falls
out of their window into memory), so the figure measured is the figure users get.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from r3mem.base_model import embedding_table
from r3mem.context_memory import ContextReader, pack_blocks
from r3mem.memory_net import MemoryNetwork


def write_snapshots(net: MemoryNetwork, histories: Sequence[Sequence[int]], slots: int, segment_len: int) -> Tensor:
    """(B, S, slots, d): each history's segments written recurrently by the compress adapter.

    Histories of equal length run as one batch per segment. A history is cut into whole
    segments from its end backwards (its oldest partial segment, if any, is dropped), so the
    newest memory block always ends exactly where the raw tokens begin.
    """
    width = len(histories[0])
    if any(len(h) != width for h in histories):
        raise ValueError("write_snapshots batches histories of one length")
    n_seg = width // segment_len
    device = net.initial_memory.device
    if n_seg == 0:
        return torch.zeros(len(histories), 0, slots, net.hidden_size, device=device)
    ids = torch.tensor([list(h)[width - n_seg * segment_len :] for h in histories], device=device)
    memory = net.initial(len(histories), slots)
    snapshots = []
    with torch.no_grad():
        for segment in ids.view(len(histories), n_seg, segment_len).unbind(1):  # (B, L) each
            memory = net.write(memory, segment)  # (B, slots, d)
            snapshots.append(memory.float())
    return torch.stack(snapshots, 1)  # (B, S, slots, d)


def context_vectors(net: MemoryNetwork, reader: ContextReader, snapshots: Tensor, budget: int) -> Tensor:
    """(S, slots, d) snapshots -> (≤budget, d) input embeddings for the base LM."""
    vectors, levels = pack_blocks(snapshots, budget)
    if vectors.shape[0] == 0:
        return vectors
    return reader(vectors, levels.to(vectors.device), embedding_table(net.causal_lm).detach())


def assemble_prefix(net: MemoryNetwork, reader: ContextReader, snapshots: Tensor, recent: Sequence[int],
                    budget: int) -> Tensor:
    """(1, ≤budget, d): compressed blocks of the older segments, then the newest tokens verbatim.

    `recent` are the history's last tokens; the reader's `verbatim` of them are kept as token
    embeddings when the budget leaves room for at least one compressed block beside them.
    """
    slots = reader.config.slots
    keep = min(reader.config.verbatim, len(recent), max(0, budget - slots) if len(snapshots) else budget)
    parts = []
    if len(snapshots):
        parts.append(context_vectors(net, reader, snapshots, budget - keep))
    if keep:
        ids = torch.tensor(list(recent)[len(recent) - keep :], device=net.initial_memory.device)
        parts.append(net.embed(ids).float())
    if not parts:
        return torch.zeros(1, 0, net.hidden_size, device=net.initial_memory.device)
    return torch.cat(parts).unsqueeze(0)


def memory_prefix(net: MemoryNetwork, reader: ContextReader, history: Sequence[int], budget: int) -> Tensor:
    """(1, ≤budget, d): the context memory of `history`, its recurrence begun at the history's start."""
    keep = min(reader.config.verbatim, max(0, budget - reader.config.slots))
    older = list(history)[: len(history) - keep]
    snapshots = write_snapshots(net, [older], reader.config.slots, net.config.segment_len)[0]
    return assemble_prefix(net, reader, snapshots, history, budget)


def base_hidden(net: MemoryNetwork, prefix: Tensor | None, ids: Tensor) -> Tensor:
    """Final hidden states (B, P+T, d) of the plain base LM (no adapter) on [prefix ; ids].

    `prefix` (B, P, d) are input embeddings read before the tokens (context memory), or None.
    """
    embeds = net.embed(ids)  # (B, T, d)
    if prefix is not None and prefix.shape[1]:
        embeds = torch.cat([prefix.to(embeds.dtype), embeds], 1)
    with net.adapter(None):
        return net.causal_lm.model(inputs_embeds=embeds, use_cache=False).last_hidden_state


@torch.no_grad()
def target_nll(net: MemoryNetwork, prefix: Tensor | None, context: Sequence[int], target: Sequence[int]) -> Tensor:
    """Per-token NLL (len(target) - 1,) of target[1:] after [prefix ; context ; target[0]].

    Token 0 of the target is not scored, so that a method with no context at all is compared
    on exactly the same tokens as every other.
    """
    ids = torch.tensor([list(context) + list(target)], device=net.initial_memory.device)
    hidden = base_hidden(net, prefix, ids)  # (1, P+C+T, d)
    start = hidden.shape[1] - len(target)  # hidden[start + i] predicts target[i + 1]
    logits = net.causal_lm.lm_head(hidden[0, start:-1]).float()  # (T-1, V)
    return torch.nn.functional.cross_entropy(logits, ids[0, -len(target) + 1 :], reduction="none")
