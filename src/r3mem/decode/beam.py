"""Expansion by beam search or sampling: (B, m, d) memories read back into token ids.

The reader is the memory network's `expand` adapter, or for inference the LM with it merged in
(`r3mem.decode.reader`). Beam search is r3mem's own loop (`r3mem.decode.beam_search`), with pool
guidance (`r3mem.decode.pool_guidance`) charging each step and the request's deadline checked between
steps (`r3mem.bounds`); sampling for cycle-consistent selection runs through transformers' `generate`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel

from r3mem.base_model import embedding_table
from r3mem.bounds import step_processors
from r3mem.decode.beam_search import beam_search
from r3mem.decode.options import Decoding
from r3mem.decode.pool_guidance import PoolGuide
from r3mem.memory_net import MemoryNetwork

# The plain reader: one greedy pass, no guidance. What training's validation and tests compare against.
GREEDY = Decoding(beams=1, samples=0, guidance=0.0)


@torch.no_grad()
def generate(network: MemoryNetwork, memory: Tensor, n_tokens: int, decoding: Decoding = GREEDY,
             marker: str = "segment", lengths: Sequence[int] | None = None,
             reader: PreTrainedModel | None = None) -> Tensor:
    """(B, m, d) memory -> (B, n_tokens) token ids: the top beam of `decoding.beams` (1: greedy).

    The length is known from the memory's metadata, so generation runs for exactly n_tokens and never
    stops early at an end-of-text token. `reader` is the LM with the expand adapter merged in
    (`r3mem.decode.reader`), for inference; without it the search reads through the adapter.
    `decoding.samples` is not read here: cycle-consistent selection (`r3mem.decode.cycle_decoding`)
    draws them.
    """
    prefix = _prefix(network, memory, marker)
    pool_guide = _guide(network, memory, n_tokens, decoding, lengths, torch.float32 if reader is None else reader.dtype)
    guide = None if pool_guide is None else pool_guide.charge
    if reader is not None:
        return beam_search(reader, prefix, n_tokens, decoding.beams, charge=guide)
    with network.adapter("expand"):
        return beam_search(network.causal_lm, prefix, n_tokens, decoding.beams, charge=guide,
                           resume=lambda: network.lm.set_adapter("expand"))


@torch.no_grad()
def candidates(network: MemoryNetwork, memory: Tensor, n_tokens: int, settings: GenerationConfig,
               decoding: Decoding = GREEDY, marker: str = "segment",
               lengths: Sequence[int] | None = None) -> Tensor:
    """(B, m, d) memory -> (B, K, n_tokens): the K = `settings.num_return_sequences` expansions that
    `settings` (beam search, sampling) draws for each memory, most likely first for beams.

    `decoding` gives the pool guidance (`guidance` > 0 holds each chunk to the tokens its memory slot
    pools, `spread` and `bag` shape the charge); `lengths` are the rows' own segment lengths (default
    `n_tokens`), which place the chunks.
    """
    prefix = _prefix(network, memory, marker)
    settings = copy.deepcopy(settings)
    settings.max_new_tokens = n_tokens
    settings.eos_token_id = None  # the length is known: never stop early
    settings.pad_token_id = network.causal_lm.config.pad_token_id or 0
    mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
    # a request's deadline stops it between steps, where the service may also run cheap calls
    processors = LogitsProcessorList(step_processors(resume=lambda: network.lm.set_adapter("expand")))
    pool_guide = _guide(network, memory, n_tokens, decoding, lengths, torch.float32)
    if pool_guide is not None:
        processors.append(pool_guide)
    with network.adapter("expand"):
        out = network.causal_lm.generate(inputs_embeds=prefix, attention_mask=mask, generation_config=settings,
                                         logits_processor=processors)
    return out[:, -n_tokens:].reshape(memory.shape[0], settings.num_return_sequences or 1, n_tokens)


def _prefix(network: MemoryNetwork, memory: Tensor, marker: str) -> Tensor:
    """(B, m, d) memory -> (B, m+1, d): what the reader reads before the first generated token."""
    empty = torch.empty(memory.shape[0], 0, network.hidden_size, device=memory.device)
    return network.read_inputs(memory, marker, empty.to(network.embed_dtype))


def _guide(network: MemoryNetwork, memory: Tensor, n_tokens: int, decoding: Decoding,
           lengths: Sequence[int] | None, product_dtype: torch.dtype) -> PoolGuide | None:
    """Pool guidance as `decoding` sets it (None when off), each row's chunks placed by its length."""
    if not decoding.guidance:
        return None
    rows = [n_tokens] * memory.shape[0] if lengths is None else lengths
    return PoolGuide(memory, rows, embedding_table(network.causal_lm), decoding.guidance, decoding.spread,
                     decoding.bag, product_dtype)
