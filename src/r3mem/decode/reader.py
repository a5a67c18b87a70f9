"""The expansion reader: the base LM with the `expand` adapter merged into its weights.

Expansion runs the LM once per decoding step for every beam of every segment, so what each row of
that pass costs is what expansion costs. Through PEFT each adapted layer is three matrix products,
a scaling and a sum; merged it is one. The copy is made once, for inference only (training keeps
reading through the adapter, whose weights it is changing), and costs one more copy of the LM's
weights in memory: half of one in bfloat16, which `R3Mem` uses where the CPU multiplies it natively.
In bfloat16 two more things are slow on a CPU and replaced here: torch's fused attention kernel for
one query token (`decode_attention`) and copying 2-byte elements when beams reorder the key/value
cache (`ReorderedCache`).
"""
from __future__ import annotations

import copy
import os
from typing import cast

import torch
from torch import Tensor
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from r3mem.errors import InvalidInput
from r3mem.machine import native_bf16
from r3mem.memory_net import MemoryNetwork

# float32 reads exactly as the adapter does; bfloat16 is over twice as fast on a CPU with native
# bf16 and, on held-out books, changed position-wise accuracy only within noise (docs/decoding.md#speed),
# though it does change which segments come back exactly. The variable lets a user who wants the
# exact path everywhere (or bf16 everywhere) say so.
DTYPE_VARIABLE = "R3MEM_EXPAND_DTYPE"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def reader_dtype(device_type: str) -> torch.dtype:
    """`$R3MEM_EXPAND_DTYPE` (float32 or bfloat16), else bfloat16 where it is native, else float32."""
    chosen = os.environ.get(DTYPE_VARIABLE, "").strip()
    if not chosen:
        return torch.bfloat16 if native_bf16(device_type) else torch.float32
    if chosen not in _DTYPES:
        raise InvalidInput(f"{DTYPE_VARIABLE} must be one of {', '.join(_DTYPES)}, got {chosen!r}")
    return _DTYPES[chosen]


@torch.no_grad()
def merged_reader(network: MemoryNetwork, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A frozen copy of the LM that reads as `network.adapter("expand")` does, in `dtype`."""
    wrapped = copy.deepcopy(network.lm)
    wrapped.set_adapter("expand")
    merged = wrapped.merge_and_unload(adapter_names=["expand"])
    reader = cast(PreTrainedModel, torch.nn.Module.to(merged, dtype).eval())
    reader.set_attn_implementation(DECODE_ATTENTION)
    for param in reader.parameters():
        param.requires_grad_(False)
    return reader


def decode_attention(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                     attention_mask: Tensor | None, scaling: float | None = None, **kwargs) -> tuple[Tensor, None]:
    """Attention for one new token per row over the whole cache, as grouped matrix products.

    A decoding step's query is one token per row and sees every cached position, so it needs no mask.
    Grouping the query heads by the key/value head they share keeps the products small; torch's
    fused CPU kernel is several times slower on this shape in bfloat16. Anything else (the prefix,
    a padding mask) goes to the standard kernel.
    """
    rows, heads, length, width = query.shape
    if length != 1 or attention_mask is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    groups = key.shape[1]
    scale = scaling if scaling is not None else width ** -0.5
    grouped = query.reshape(rows, groups, heads // groups, width)  # (rows, kv heads, heads per kv head, d)
    weights = torch.softmax((grouped @ key.transpose(-1, -2)).float() * scale, dim=-1).to(value.dtype)
    return (weights @ value).reshape(rows, 1, heads, width), None


class ReorderedCache(DynamicCache):
    """transformers' growing key/value cache, reordered between beam steps as 4-byte words: the
    gather is the same, but torch copies 4-byte elements faster than 2-byte ones."""

    def reorder_cache(self, beam_idx: Tensor) -> None:  # type: ignore[override]  # any index tensor
        for layer in self.layers:
            grown = cast(DynamicLayer, layer)
            grown.keys = _gather_rows(cast(Tensor, grown.keys), beam_idx)
            grown.values = _gather_rows(cast(Tensor, grown.values), beam_idx)


def _gather_rows(states: Tensor, index: Tensor) -> Tensor:
    if states.element_size() == 2 and states.shape[-1] % 2 == 0 and states.is_contiguous():
        return states.view(torch.int32).index_select(0, index).view(states.dtype)
    return states.index_select(0, index)


DECODE_ATTENTION = "r3mem_decode"
AttentionInterface.register(DECODE_ATTENTION, decode_attention)
AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)
