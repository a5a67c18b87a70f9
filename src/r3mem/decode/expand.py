"""The decoder's entry point: a batch of snapshots expanded as one `Decoding` value says.

Beam search (`r3mem.decode.beam`) keeps the top beam; with `samples` > 0, cycle-consistent
selection (`r3mem.decode.cycle_decoding`) chooses among the beams and the samples instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from transformers import PreTrainedModel

from r3mem.decode.beam import generate
from r3mem.decode.cycle_decoding import expand_consistent
from r3mem.decode.options import Decoding
from r3mem.errors import InvalidInput
from r3mem.memory_net import MemoryNetwork


def expand_batch(network: MemoryNetwork, snapshots: Tensor, token_counts: Sequence[int], decoding: Decoding,
                 read_memories: Tensor | None = None, digests: Tensor | None = None,
                 reader: PreTrainedModel | None = None) -> list[list[int]]:
    """Token ids regenerated from each snapshot (B, m, d), `token_counts[i]` of them for row i.

    `read_memories` (B, m, d) are the memories each snapshot was written from and `digests` (B, 8)
    their sources' digests; only cycle-consistent selection reads them, and it needs the former.
    `reader` is the merged expansion reader (`r3mem.decode.reader`) beam search runs on, if given.
    """
    if decoding.samples:
        if read_memories is None:
            raise InvalidInput("cycle-consistent selection (samples > 0) needs the memories each snapshot was "
                               "written from")
        return [choice.ids for choice in expand_consistent(network, read_memories, snapshots, token_counts,
                                                           decoding, digests)]
    generated = generate(network, snapshots, max(token_counts), decoding, lengths=token_counts,
                         reader=reader).tolist()
    return [ids[:n] for n, ids in zip(token_counts, generated, strict=True)]
