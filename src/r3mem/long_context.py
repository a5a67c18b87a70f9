"""A running text whose oldest tokens fold into memory instead of falling out of the window.

`LongContext` keeps at most `window - budget` raw tokens. When more arrive, whole segments
from the oldest end are written into memory by the compress adapter (one forward pass per
128-token segment, the recurrence carried), and the plain base LM reads
[context memory (≤ budget vectors) ; raw tokens ; prompt] — exactly what
`r3mem eval perplexity` measures as `memory`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from r3mem.api import R3Mem
from r3mem.context_lm import assemble_prefix
from r3mem.errors import InvalidInput


class LongContext:
    """An unbounded history in a fixed reader budget: raw recent tokens plus memory of the rest."""

    def __init__(self, r3: R3Mem, window: int = 512, budget: int = 64) -> None:
        if not 0 < budget < window:
            raise InvalidInput(f"budget must be in 1..{window - 1}, got {budget}")
        self.r3, self.window, self.budget = r3, window, budget
        self.raw: list[int] = []
        self.snapshots: list[Tensor] = []  # (slots, d) per folded segment, oldest first
        self._state: Tensor | None = None  # the recurrent memory after the last folded segment
        self.folded_tokens = 0

    @property
    def tail(self) -> int:
        return self.window - self.budget

    def append(self, text: str) -> None:
        """Add text; segments that no longer fit the raw tail are folded into memory."""
        self.raw.extend(self.r3.tokenize(text))
        seg = self.r3.config.segment_len
        while len(self.raw) - self.tail - self.r3.context_reader.config.verbatim >= seg:
            self._fold(self.raw[:seg])
            del self.raw[:seg]

    @torch.no_grad()
    def _fold(self, segment: list[int]) -> None:
        net, slots = self.r3.network, self.r3.context_reader.config.slots
        state = net.initial(1, slots) if self._state is None else self._state
        self._state = net.write(state, torch.tensor([segment], device=self.r3.device))  # (1, slots, d)
        self.snapshots.append(self._state[0].float())
        self.folded_tokens += len(segment)

    @torch.no_grad()
    def prefix(self) -> Tensor | None:
        """(1, ≤budget, d) memory vectors for the reader, or None while nothing is folded."""
        if not self.snapshots:
            return None
        recent = self.raw[: len(self.raw) - self.tail]  # folded text's newest tokens, before the raw tail
        return assemble_prefix(self.r3.network, self.r3.context_reader, torch.stack(self.snapshots), recent,
                               self.budget)

    @torch.no_grad()
    def generate(self, prompt: str = "", max_new_tokens: int = 64) -> str:
        """Greedy continuation of [memory ; raw tail ; prompt] by the plain base LM."""
        net = self.r3.network
        ids = torch.tensor([self.raw[-self.tail :] + self.r3.tokenize(prompt)], device=self.r3.device)
        if ids.shape[1] == 0:
            raise InvalidInput("nothing to continue: the context and the prompt are empty")
        embeds = net.embed(ids)
        prefix = self.prefix()
        if prefix is not None:
            embeds = torch.cat([prefix.to(embeds.dtype), embeds], 1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        with net.adapter(None):
            out = net.causal_lm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                         do_sample=False, pad_token_id=net.causal_lm.config.pad_token_id or 0)
        return self.r3.detokenize(out[0, -max_new_tokens:].tolist()) if out.shape[1] else ""
