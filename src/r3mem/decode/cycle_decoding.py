"""Cycle-consistent expansion: among several candidate expansions, keep the one whose
re-compression lands nearest the stored memory.

R³Mem trains mem(expand(mem(x))) ≈ mem(x) (`L_cyc`). At decoding time the same identity can
choose: the source re-compresses to the stored snapshot (up to its fp16 rounding), and because
the memory pools each chunk's token embeddings, a candidate that skipped or repeated a word
lands further away than one that only differs from the top beam in probability. Beam search
alone proposes candidates too alike to matter, so `samples` draws more at temperature 0.7; the
nearest is kept among those that read almost as well as the likeliest (`NLL_MARGIN`).

When the memory keeps source digests (`r3mem.verify`), a candidate that matches its segment's
digest is the source itself and is taken whatever its distance; the caller learns it is exact.

Sampling is seeded per segment, so expanding the same memory twice gives the same text, a
segment reads the same alone or in a batch, and the caller's global RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GenerationConfig

from r3mem.decode.beam import candidates
from r3mem.decode.options import NLL_MARGIN, SAMPLE_TEMPERATURE, Decoding
from r3mem.memory_net import MemoryNetwork
from r3mem.verify import matches

_SEED = 0  # fixed: an expansion is a function of the memory, not of when it was asked for


@dataclass
class Choice:
    """The kept candidate of one segment, how far its re-compression lies from the memory, and
    whether it matched the segment's source digest (None: no digest to check against)."""

    ids: list[int]
    distance: float
    verified: bool | None


def draw(network: MemoryNetwork, snapshots: Tensor, n_tokens: int, decoding: Decoding,
         lengths: Sequence[int] | None = None) -> Tensor:
    """(B, m, d) snapshots -> (B, beams + samples, n_tokens) candidates, the top beam first.

    `decoding`'s pool guidance and `lengths` are `r3mem.decode.beam.candidates`': for beams and samples alike.

    Each segment's samples are drawn on their own from the same seed, so a segment reads the
    same whether it is expanded alone or beside others (a recall's batch depends on its query).
    """
    rows = [n_tokens] * len(snapshots) if lengths is None else list(lengths)
    beam_search = GenerationConfig(num_beams=decoding.beams, num_return_sequences=decoding.beams)
    pool = candidates(network, snapshots, n_tokens, beam_search, decoding, lengths=rows)
    if not decoding.samples:
        return pool
    sampling = GenerationConfig(do_sample=True, temperature=SAMPLE_TEMPERATURE, top_k=0, top_p=1.0,
                                num_return_sequences=decoding.samples)
    devices = [snapshots.device] if snapshots.device.type == "cuda" else []
    drawn = []
    with torch.random.fork_rng(devices=devices):
        for b, snapshot in enumerate(snapshots.split(1)):
            torch.manual_seed(_SEED)
            drawn.append(candidates(network, snapshot, n_tokens, sampling, decoding, lengths=rows[b : b + 1]))
    return torch.cat([pool, torch.cat(drawn)], 1)


@torch.no_grad()
def mean_nll(network: MemoryNetwork, snapshot: Tensor, candidates: Tensor) -> Tensor:
    """(K,) mean token NLL of each candidate (K, T) read back from `snapshot` (m, d), teacher-forced."""
    count, length = candidates.shape
    memory = snapshot.float().unsqueeze(0).expand(count, -1, -1)
    logits = network.read(memory, candidates, keep_logits=True).kept_logits  # (K*T, V)
    assert logits is not None
    nll = F.cross_entropy(logits, candidates.reshape(-1), reduction="none")
    return nll.view(count, length).mean(1)


@torch.no_grad()
def choose(network: MemoryNetwork, read_memory: Tensor, snapshot: Tensor, candidates: Tensor,
           digest: Tensor | None = None) -> Choice:
    """Pick one segment's expansion from `candidates` (K, T) by re-compressing each.

    `read_memory` (m, d) is the memory the segment was written from (the previous snapshot, or
    the initial memory for a first segment) and `snapshot` (m, d) the one it produced. Only
    candidates within NLL_MARGIN of the likeliest one's mean token NLL compete on distance, so
    a sample that re-compresses close by but reads worse does not displace better wording;
    ties keep the earlier candidate, so the top beam wins when nothing is nearer.
    """
    rows = candidates.tolist()
    if digest is not None:
        for i, ids in enumerate(rows):
            if matches(digest, ids):  # the source itself: only its own distance is needed
                return Choice(ids, float(_distances(network, read_memory, snapshot, candidates[i : i + 1])[0]), True)
    distance = _distances(network, read_memory, snapshot, candidates)
    nll = mean_nll(network, snapshot, candidates)
    best = int(torch.where(nll <= nll.min() + NLL_MARGIN, distance, torch.inf).argmin())
    return Choice(rows[best], float(distance[best]), None if digest is None else False)


def _distances(network: MemoryNetwork, read_memory: Tensor, snapshot: Tensor, candidates: Tensor) -> Tensor:
    """(K,) mean squared distance from `snapshot` of each candidate (K, T) re-compressed from `read_memory`."""
    count = candidates.shape[0]
    again = network.write(read_memory.unsqueeze(0).expand(count, -1, -1).float(), candidates)  # (K, m, d)
    return (again - snapshot.float().unsqueeze(0)).pow(2).mean((1, 2))


def expand_consistent(network: MemoryNetwork, read_memories: Tensor, snapshots: Tensor,
                      token_counts: Sequence[int], decoding: Decoding,
                      digests: Tensor | None = None) -> list[Choice]:
    """Expand a batch of segments (B, m, d), each written from `read_memories` (B, m, d), and keep
    for each the candidate nearest its snapshot; `token_counts` trims each to its own length."""
    pool = draw(network, snapshots, max(token_counts), decoding, token_counts)  # (B, K, T)
    return [choose(network, read_memories[b], snapshots[b], pool[b, :, :n],
                   None if digests is None else digests[b])
            for b, n in enumerate(token_counts)]
