"""A running text whose oldest tokens fold into memory instead of falling out of the window.

`LongContext` keeps at most `window - budget` raw tokens. When more arrive, whole segments
from the oldest end are folded into the activation memory (one forward pass of the plain base
LM per 128-token segment, `r3mem.activation_memory`), and the LM reads
[memory (≤ budget positions) ; raw tokens ; prompt] — exactly what `r3mem eval perplexity`
measures as `memory`.
"""

from __future__ import annotations

from r3mem import activation_memory
from r3mem.activation_memory import ActivationConfig, ActivationMemory
from r3mem.api import R3Mem
from r3mem.errors import InvalidInput


class LongContext:
    """An unbounded history in a fixed reader budget: raw recent tokens plus memory of the rest."""

    def __init__(self, r3: R3Mem, window: int = 512, budget: int = 64) -> None:
        if not 1 < budget < window:
            raise InvalidInput(f"budget must be in 2..{window - 1}, got {budget}")
        self.r3, self.window, self.budget = r3, window, budget
        self.config = ActivationConfig(budget=budget)
        self.raw: list[int] = []
        self.memory: ActivationMemory = activation_memory.EMPTY
        self.folded_tokens = 0

    @property
    def tail(self) -> int:
        return self.window - self.budget

    def append(self, text: str) -> None:
        """Add text; segments that no longer fit the raw tail are folded into memory."""
        self.raw.extend(self.r3.tokenize(text))
        seg = self.r3.config.segment_len
        while len(self.raw) - self.tail >= seg:
            self._fold(self.raw[:seg])
            del self.raw[:seg]

    def _fold(self, segment: list[int]) -> None:
        with self.r3.network.adapter(None):
            self.memory = activation_memory.fold(self.r3.network.causal_lm, self.memory, segment, self.config)
        self.folded_tokens += len(segment)

    def generate(self, prompt: str = "", max_new_tokens: int = 64) -> str:
        """Greedy continuation of [memory ; raw tail ; prompt] by the plain base LM."""
        ids = self.raw[-self.tail :] + self.r3.tokenize(prompt)
        if not ids:
            raise InvalidInput("nothing to continue: the context and the prompt are empty")
        with self.r3.network.adapter(None):
            out = activation_memory.greedy(self.r3.network.causal_lm, self.memory, ids, max_new_tokens,
                                           self.config, stop=self.r3.tokenizer.eos_token_id)
        return self.r3.detokenize(out)
