"""Activation memory: a bounded key/value memory of the frozen LM's own attention states.

The frozen LM reads compressed input vectors badly (docs/retention.md), but it reads its own
keys and values perfectly: they are what attention consumes. So the context memory keeps, for
every layer and key/value head, at most `budget` key/value entries chosen from everything the
history has written, and the LM reads them as `budget` positions in front of the raw tail.

The memory is folded segment by segment, recurrently: each segment is read with the current
memory in front of it, so what the memory holds shapes the new keys and values; then each head
keeps its first entry (the attention sink), its `recent` newest entries, and the entries the
segment's last `observe` queries attended to most (a per-head choice, as in SnapKV). With
`reach`, only attention from at least that many tokens away counts: every memory entry is read
from afar (the raw tail lies between it and the text being predicted), and what queries pay their
own neighbours says little about what is worth keeping. It helped on the tuning texts and not on
the held-out ones at 4,096 tokens of history (docs/retention.md), so it is off by default. Kept keys
are re-rotated (RoPE) to positions 0..m-1, so the reader sees a contiguous prefix whatever the
history's length. When reading, attention to memory entries is lowered by `bias` (a logit
offset), which keeps far-away text from passing for the sentence just before the tail.

Nothing here trains, and the compress/expand adapters (reconstruction) are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache

from r3mem.base_model import CausalLM, embedding_table


@dataclass(frozen=True)
class ActivationConfig:
    """How the memory is chosen and read; the defaults are what docs/retention.md measured."""

    budget: int = 64  # positions per head the reader gives the memory
    recent_share: float = 0.5  # share of the budget always given to the newest entries
    observe: int = 32  # queries at a segment's end whose attention ranks the entries
    bias: float = 1.0  # logit offset subtracted from attention to memory (not the sink)
    spare_newest: bool = False  # True: the newest entries (the text just before the tail) keep no bias
    reach: int = 0  # attention from queries fewer tokens away than this does not rank an entry; 0: all does

    def __post_init__(self) -> None:
        if (self.budget < 2 or not 0 <= self.recent_share < 1 or self.observe < 1 or self.bias < 0
                or self.reach < 0):
            raise ValueError(f"invalid activation memory config: {self}")

    @property
    def recent(self) -> int:
        return min(self.budget - 1, int(self.budget * self.recent_share))


@dataclass(frozen=True)
class ActivationMemory:
    """Per layer, keys and values (1, kv_heads, m, head_dim) at positions 0..m-1, and where each
    entry stood in the text (kv_heads, m); `folded` tokens of text have been read into it."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    positions: tuple[Tensor, ...] = ()
    folded: int = 0

    @property
    def size(self) -> int:
        return int(self.keys[0].shape[2]) if self.keys else 0

    def cache(self) -> DynamicCache:
        """A fresh cache holding the memory (the model's forward pass appends to it)."""
        cache = DynamicCache()
        for layer, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            cache.update(k, v, layer)
        return cache


EMPTY = ActivationMemory((), (), (), 0)


@contextmanager
def eager_attention(model: CausalLM) -> Iterator[None]:
    """Attention weights are needed to rank entries; only the eager kernel returns them."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _rotate(keys: Tensor, delta: Tensor, inv_freq: Tensor) -> Tensor:
    """Keys (kv_heads, n, d) moved by `delta` (kv_heads, n) positions: RoPE composes additively."""
    freqs = delta.unsqueeze(-1).to(inv_freq.dtype) * inv_freq  # (h, n, d/2)
    angle = torch.cat([freqs, freqs], -1)
    half = keys.shape[-1] // 2
    turned = torch.cat([-keys[..., half:], keys[..., :half]], -1)
    return (keys * angle.cos().to(keys.dtype) + turned * angle.sin().to(keys.dtype))


def _far_attention(attention: Tensor, key_positions: Tensor, query_positions: Tensor, reach: int) -> Tensor:
    """(heads, q, n) attention with what queries pay entries fewer than `reach` tokens back zeroed.

    `key_positions` (kv_heads, n) and `query_positions` (q,) are places in the text."""
    near = (query_positions[None, :, None] - key_positions[:, None, :]) < reach  # (kv_heads, q, n)
    return attention.masked_fill(near.repeat_interleave(attention.shape[0] // key_positions.shape[0], 0), 0.0)


def _choose(scores: Tensor, budget: int, recent: int) -> Tensor:
    """(kv_heads, n) scores -> (kv_heads, ≤budget) sorted indices: sink, newest, best-ranked."""
    n = scores.shape[1]
    if n <= budget:
        return torch.arange(n).expand(scores.shape[0], n)
    ranked = scores.clone()
    ranked[:, 0] = float("inf")
    if recent:
        ranked[:, n - recent :] = float("inf")
    return torch.topk(ranked, budget, dim=-1).indices.sort(-1).values


@torch.no_grad()
def fold(model: CausalLM, memory: ActivationMemory, segment: Sequence[int],
         config: ActivationConfig = ActivationConfig()) -> ActivationMemory:
    """The memory after reading `segment` (token ids) with `memory` in front of it."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(segment)], device=device)
    m = memory.size
    with eager_attention(model):
        out = model(input_ids=ids, cache=memory.cache() if m else DynamicCache(),
                    position_ids=torch.arange(m, m + ids.shape[1], device=device).view(1, -1),
                    output_attentions=True, use_cache=True)
    inv_freq = model.model.rotary_emb.inv_freq
    kv_heads = model.config.num_key_value_heads
    length = ids.shape[1]
    here = torch.arange(memory.folded, memory.folded + length, device=device)  # the segment's places in the text
    observers = here[-config.observe :]
    keys, values, positions = [], [], []
    for n_layer, (layer, attention) in enumerate(zip(out.cache.layers, out.attentions, strict=True)):
        k, v = layer.keys[0], layer.values[0]  # (h, n, d)
        n = k.shape[1]
        placed = here.expand(kv_heads, length)
        if m:
            placed = torch.cat([memory.positions[n_layer], placed], 1)  # (h, n)
        observed = attention[0, :, -config.observe :].float()  # (heads, q, n)
        if config.reach:
            observed = _far_attention(observed, placed, observers, config.reach)
        scores = observed.reshape(kv_heads, -1, n).sum(1)  # grouped query heads share a key head
        index = _choose(scores, config.budget, config.recent).to(device)  # (h, b)
        gather = index.unsqueeze(-1).expand(-1, -1, k.shape[-1])
        delta = torch.arange(index.shape[1], device=device) - index  # new position - old position
        keys.append(_rotate(k.gather(1, gather), delta, inv_freq).unsqueeze(0))
        values.append(v.gather(1, gather).unsqueeze(0))
        positions.append(placed.gather(1, index))
    return ActivationMemory(tuple(keys), tuple(values), tuple(positions), memory.folded + length)


def fold_all(model: CausalLM, ids: Sequence[int], segment_len: int,
             config: ActivationConfig = ActivationConfig()) -> ActivationMemory:
    """The memory of `ids`, folded from its start in whole segments (the oldest partial dropped)."""
    start = len(ids) % segment_len
    memory = EMPTY
    for s in range(start, len(ids), segment_len):
        memory = fold(model, memory, ids[s : s + segment_len], config)
    return memory


def _biased(memory_size: int, config: ActivationConfig) -> slice:
    """The memory columns whose attention is lowered: all but the sink (and the newest, if spared)."""
    end = memory_size - config.recent if config.spare_newest else memory_size
    return slice(1, max(1, end))


def reader_mask(memory_size: int, length: int, config: ActivationConfig, dtype: torch.dtype,
                device: torch.device) -> Tensor:
    """(1, 1, length, m + length) additive mask: causal over the tokens, memory offset by -bias."""
    mask = torch.full((length, memory_size + length), float("-inf"), device=device).triu(memory_size + 1)
    mask[:, _biased(memory_size, config)] -= config.bias
    return mask.to(dtype)[None, None]


@torch.no_grad()
def read_logits(model: CausalLM, memory: ActivationMemory, ids: Tensor,
                config: ActivationConfig = ActivationConfig()) -> tuple[Tensor, DynamicCache]:
    """Logits (1, T, V) of the plain LM reading [memory ; ids], and the cache after it."""
    m, length = memory.size, ids.shape[1]
    dtype = embedding_table(model).dtype
    mask = reader_mask(m, length, config, dtype, ids.device) if m else None
    out = model(input_ids=ids, cache=memory.cache() if m else DynamicCache(), attention_mask=mask,
                position_ids=torch.arange(m, m + length, device=ids.device).view(1, -1), use_cache=True)
    return out.logits, out.cache


@torch.no_grad()
def target_nll(model: CausalLM, memory: ActivationMemory, context: Sequence[int], target: Sequence[int],
               config: ActivationConfig = ActivationConfig()) -> Tensor:
    """Per-token NLL (len(target) - 1,) of target[1:] after [memory ; context ; target[0]]."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(context) + list(target)], device=device)
    logits, _ = read_logits(model, memory, ids, config)
    scored = logits[0, ids.shape[1] - len(target) : -1].float()
    return torch.nn.functional.cross_entropy(scored, ids[0, -len(target) + 1 :], reduction="none")


@torch.no_grad()
def greedy(model: CausalLM, memory: ActivationMemory, ids: Sequence[int], max_new_tokens: int,
           config: ActivationConfig = ActivationConfig(), stop: int | None = None) -> list[int]:
    """Greedy continuation of [memory ; ids], one cached step per token."""
    device = next(model.parameters()).device
    prompt = torch.tensor([list(ids)], device=device)
    logits, cache = read_logits(model, memory, prompt, config)
    m, position, out = memory.size, memory.size + prompt.shape[1], []
    dtype = embedding_table(model).dtype
    for _ in range(max_new_tokens):
        token = int(logits[0, -1].argmax())
        if token == stop:
            break
        out.append(token)
        step = torch.zeros(1, 1, 1, position + 1, dtype=dtype, device=device)
        step[..., _biased(m, config)] -= config.bias
        logits = model(input_ids=torch.tensor([[token]], device=device), cache=cache,
                       attention_mask=step, position_ids=torch.tensor([[position]], device=device),
                       use_cache=True).logits
        position += 1
    return out
