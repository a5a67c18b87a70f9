"""The memory network: virtual memory tokens written by one adapter, read by another.

Forward (retention). One compress step runs the frozen base LM, with the `compress`
LoRA adapter, on

    [ read memory (m) ; segment tokens (T) ; write tokens (m) ]

under causal attention. The final hidden states at the m write positions, through
`MemoryProjection`, become the next read memory: a fixed-size state carried across
segments (RMT-style recurrence), so history length is unbounded. The memory after
each step is that segment's snapshot.

Backward (retrieval). The same base LM with the `expand` adapter reads

    [ memory (m) ; marker (1) ; target tokens ... ]

and predicts the target autoregressively. The marker says what to produce: the raw
unit the memory was written from (reconstruction at a hierarchy level) or the text
that follows it (`continue`, the long-context LM). m is chosen per call, so the
compression ratio L/m is a run-time knob: memory m uses the first m rows of the
learned initial memory and write-token tables.
The network only: decoding lives in `r3mem.decode`, its weights' (de)serialisation in `r3mem.weights`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from r3mem.base_model import CausalLM, embedding_table
from r3mem.bounds import step
from r3mem.chunking import chunk_index
from r3mem.config import MARKERS, MemoryConfig

ADAPTERS = ("compress", "expand")
MEMORY_PARAMS = ("initial_memory", "write_tokens", "markers")


def chunk_pool(tokens: Tensor, m: int, mask: Tensor | None = None) -> Tensor:
    """(B, T, d) segment embeddings -> (B, m, d): each vector sums one contiguous chunk.

    Chunk j of a row of n real tokens holds positions t with floor(t*m/n) == j, so a
    vector covers about n/m tokens whatever the segment length. Sums are divided by
    sqrt(count): a sum of k near-orthogonal embeddings then keeps one embedding's norm.
    """
    batch, width, _ = tokens.shape
    lengths = torch.full((batch,), width, device=tokens.device) if mask is None else mask.long().sum(1)  # (B,)
    chunk = chunk_index(lengths, width, m)  # (B, T), -1 on padding (masks are right-padded)
    assign = F.one_hot(chunk.clamp(min=0), m).to(torch.float32) * (chunk >= 0).unsqueeze(-1).float()  # (B, T, m)
    counts = assign.sum(1).clamp(min=1.0)  # (B, m)
    return torch.einsum("btm,btd->bmd", assign, tokens.float()) / counts.sqrt().unsqueeze(-1)


class MemoryProjection(nn.Module):
    """Makes a memory from the write states plus the segment's chunk-pooled embeddings.

    Write states alone did not open the memory channel on this CPU's budget: with
    random segments the reader learnt to ignore a memory that carried nothing yet,
    and held-out reconstruction stayed at the no-memory level (0.33 after 290 steps
    of the first run). Adding each chunk's pooled token embeddings gives the reader
    a signal in its own input space from step one. The write states join through a
    gate that starts small (0.1; not 0, so the recurrence is live from step one) and
    carry what pooling cannot: order within a chunk and the recurrent past.
    Probe (ratio 4, 32-token segments, L_rec only, batch 8, lr 1e-3, 150 steps):
    held-out accuracy 0.59 with the pooled path; without it, training accuracy
    stayed at 0.27-0.32, the no-memory level.

    Final hidden states have norm ~50 while SmolLM2's input embeddings have ~3.2
    (DESIGN.md §6): the write path is a linear map (identity at init), an RMS norm,
    then a per-channel gain initialised to the embeddings' RMS.
    """

    def __init__(self, dim: int, embed_rms: float, eps: float = 1e-6) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        nn.init.eye_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.gain = nn.Parameter(torch.full((dim,), float(embed_rms)))
        self.write_gate = nn.Parameter(torch.tensor(0.1))
        self.eps = eps

    def forward(self, hidden: Tensor, pooled: Tensor) -> Tensor:
        x = self.linear(hidden)  # (B, m, d)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return pooled + self.write_gate * x * self.gain


@dataclass
class ReadStats:
    """Summed token NLL and teacher-forced accuracy counts of one read pass."""

    nll_sum: Tensor
    n_tokens: int
    n_correct: int
    logits: Tensor | None = None  # (N, V) at target positions, when asked for

    @property
    def loss(self) -> Tensor:
        return self.nll_sum / max(1, self.n_tokens)

    @property
    def kept_logits(self) -> Tensor:
        """The logits a `keep_logits=True` read kept; reading them otherwise is a caller bug."""
        if self.logits is None:
            raise ValueError("this read did not keep its logits: pass keep_logits=True")
        return self.logits


class MemoryNetwork(nn.Module):
    """Base LM + two LoRA adapters + memory parameters. The base stays frozen."""

    def __init__(self, base: PreTrainedModel, config: MemoryConfig) -> None:
        super().__init__()
        self.config = config
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules),
            bias="none",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.init_seed)  # LoRA A matrices use the global RNG
            self.lm = get_peft_model(base, lora, adapter_name=ADAPTERS[0])
            self.lm.add_adapter(ADAPTERS[1], lora)
        self._lora_params = [p for n, p in self.lm.named_parameters() if "lora_" in n]
        # Recompute each LM pass in backward instead of keeping its activations (training only).
        self.activation_checkpointing = False

        table = embedding_table(base).detach()  # (V, d)
        gen = torch.Generator().manual_seed(config.init_seed)

        def sample_rows(n: int) -> nn.Parameter:
            # Real token embeddings: in distribution for the LM from the first step.
            rows = torch.randint(0, table.shape[0], (n,), generator=gen)
            return nn.Parameter(table[rows].clone().float())

        self.initial_memory = sample_rows(config.max_memory_tokens)  # θ, (M, d)
        self.write_tokens = sample_rows(config.max_memory_tokens)  # (M, d)
        self.markers = sample_rows(len(MARKERS))  # (K, d)
        embed_rms = table.float().pow(2).mean().sqrt().item()
        self.projection = MemoryProjection(table.shape[1], embed_rms)

    # -- plumbing -------------------------------------------------------------
    @property
    def causal_lm(self) -> CausalLM:
        """The base LM inside PEFT's wrapper; adapters act on it as `adapter()` selects."""
        return cast(CausalLM, self.lm.base_model.model)

    @property
    def hidden_size(self) -> int:
        return self.causal_lm.config.hidden_size

    def embed(self, ids: Tensor) -> Tensor:
        return self.causal_lm.get_input_embeddings()(ids)

    @contextmanager
    def adapter(self, name: str | None) -> Iterator[None]:
        """Run the LM with one adapter active, or with none (`None`: the plain base LM)."""
        if name is None:
            with self.lm.disable_adapter():
                yield
            return
        self.lm.set_adapter(name)
        # PEFT freezes inactive adapters on switch; compress and expand train jointly,
        # so a graph built under one must still reach its weights after a switch.
        for param in self._lora_params:
            param.requires_grad_(True)
        yield

    def _hidden(self, adapter: str, embeds: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Final hidden states (B, T, d) of the LM under `adapter`.

        With `activation_checkpointing` on, only the inputs are kept for backward and the
        pass is re-run there. The adapter is chosen inside the re-run function: a write and a
        read use different adapters, and the one active at backward time is neither's.
        """
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._hidden_under, adapter, embeds, attention_mask, use_reentrant=False)
        return self._hidden_under(adapter, embeds, attention_mask)

    def _hidden_under(self, adapter: str, embeds: Tensor, attention_mask: Tensor | None) -> Tensor:
        positions = None
        if attention_mask is not None:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        with self.adapter(adapter):
            out = self.causal_lm.model(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=positions,
                use_cache=False,
            )
        return out.last_hidden_state

    def initial(self, batch: int, m: int) -> Tensor:
        return self.initial_memory[:m].unsqueeze(0).expand(batch, -1, -1)  # (B, m, d)

    # -- forward: retention ---------------------------------------------------
    def write(self, read_memory: Tensor, segment_ids: Tensor, segment_mask: Tensor | None = None) -> Tensor:
        """One compress step: (B, m, d) memory + (B, T) tokens -> (B, m, d) next memory.

        `segment_mask` (B, T) marks real tokens when a batch holds units of unequal
        length; padded positions are masked out and skipped by the position ids.
        """
        return self.write_embeds(read_memory, self.embed(segment_ids), segment_mask)

    def write_embeds(self, read_memory: Tensor, tokens: Tensor, segment_mask: Tensor | None = None) -> Tensor:
        """`write` on token embeddings (B, T, d): soft tokens for the cycle loss."""
        states = self.write_states(read_memory, tokens, segment_mask)
        return self.projection(states, chunk_pool(tokens, read_memory.shape[1], segment_mask))

    def write_states(self, read_memory: Tensor, tokens: Tensor, segment_mask: Tensor | None = None) -> Tensor:
        """Final hidden states (B, m, d) at the write positions, before the projection."""
        batch, m, _ = read_memory.shape
        write = self.write_tokens[:m].unsqueeze(0).expand(batch, -1, -1)  # (B, m, d)
        x = torch.cat([read_memory.to(tokens.dtype), tokens, write.to(tokens.dtype)], 1)
        mask = None
        if segment_mask is not None:
            ones = segment_mask.new_ones(batch, m)
            mask = torch.cat([ones, segment_mask, ones], 1)  # (B, m+T+m)
        hidden = self._hidden("compress", x, mask)  # (B, m+T+m, d)
        return hidden[:, -m:].float()

    def compress(self, segments: Iterable[Tensor], m: int) -> Iterator[Tensor]:
        """Recur over one document's segments; yield each segment's snapshot (m, d)."""
        memory = self.initial(1, m)
        for segment in segments:
            memory = self.write(memory, segment.unsqueeze(0))
            yield memory[0]
            step()  # a request's deadline, and the service's cheap calls, between segments

    # -- backward: retrieval --------------------------------------------------
    def read_inputs(self, memory: Tensor, marker: str, tokens: Tensor) -> Tensor:
        """(B, m, d) memory + (B, T, d) token embeddings -> (B, m+1+T, d) the reader's input."""
        batch = memory.shape[0]
        mark = self.markers[MARKERS.index(marker)].expand(batch, 1, -1)  # (B, 1, d)
        dtype = tokens.dtype
        return torch.cat([memory.to(dtype), mark.to(dtype), tokens], 1)

    def read(
        self,
        memory: Tensor,
        target_ids: Tensor,
        target_mask: Tensor | None = None,
        marker: str = "segment",
        keep_logits: bool = False,
        score_from: int = 0,
        prefix_ids: Tensor | None = None,
    ) -> ReadStats:
        """-log p(target | memory, marker) under the expand adapter (teacher forcing).

        memory (B, m, d) may have m = 0 (no memory). Logits are computed only at
        target positions: over a 49k vocabulary they dominate the cost otherwise.
        `score_from` skips the first target tokens in the loss (they are still read), so
        methods that cannot predict a segment's first token are compared on the same tokens.
        `prefix_ids` (B, T-1) replaces the tokens read before each target (by default the
        target itself, shifted): scheduled sampling reads the model's own guesses there.
        """
        batch, m, _ = memory.shape
        prefix = target_ids[:, :-1] if prefix_ids is None else prefix_ids
        x = self.read_inputs(memory, marker, self.embed(prefix))  # (B, m+T, d)
        mask = None
        if target_mask is not None:
            mask = torch.cat([target_mask.new_ones(batch, m + 1), target_mask[:, :-1]], 1)
        hidden = self._hidden("expand", x, mask)[:, m:]  # (B, T, d): position i predicts token i
        scored_mask = None if target_mask is None else target_mask[:, score_from:]
        return self.token_nll(hidden[:, score_from:], target_ids[:, score_from:], scored_mask, keep_logits)

    @torch.no_grad()
    def guess(self, memory: Tensor, target_ids: Tensor, marker: str = "segment") -> Tensor:
        """The argmax token (B, T) at each target position under teacher forcing.

        What a free-running expansion would write at a position whose prefix it got right:
        the material two-pass scheduled sampling mixes into the prefix it trains on.
        """
        logits = self.read(memory, target_ids, marker=marker, keep_logits=True).kept_logits
        return logits.argmax(-1).view_as(target_ids)

    def token_nll(
        self, hidden: Tensor, target_ids: Tensor, target_mask: Tensor | None, keep_logits: bool = False
    ) -> ReadStats:
        """Summed NLL and correct-count of `target_ids` from the hidden states predicting them."""
        keep = torch.ones_like(target_ids, dtype=torch.bool) if target_mask is None else target_mask.bool()
        logits = self.causal_lm.lm_head(hidden[keep]).float()  # (N, V)
        targets = target_ids[keep]
        nll = F.cross_entropy(logits, targets, reduction="sum")
        correct = int((logits.argmax(-1) == targets).sum())
        return ReadStats(nll, int(targets.numel()), correct, logits if keep_logits else None)

    @property
    def embed_dtype(self) -> torch.dtype:
        return embedding_table(self.causal_lm).dtype

    # -- parameters and state -------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """LoRA weights of both adapters plus the memory parameters; the base stays frozen."""
        memory = [getattr(self, n) for n in MEMORY_PARAMS] + list(self.projection.parameters())
        return self._lora_params + memory
