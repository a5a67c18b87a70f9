"""Expansion: how a memory is decoded back into tokens.

`options` holds the `Decoding` value (re-exported here and from `r3mem`) and its bounds, free of
torch so the command line checks a setting before a model loads. The decoders import torch:
`expand` is the entry point, `beam` runs beam search (`beam_search`, r3mem's own loop) and sampling,
`reader` makes the LM with the expand adapter merged in that inference reads with, `pool_guidance`
and `slot_bags` hold each chunk to its memory slot, and `cycle_decoding` chooses among candidates
by re-compression.
"""

from r3mem.decode.options import DEFAULT_DECODING, Decoding

__all__ = ["DEFAULT_DECODING", "Decoding"]
