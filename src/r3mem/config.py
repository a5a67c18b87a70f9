"""The memory network's configuration: a frozen dataclass saved beside every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from r3mem.errors import CheckpointError, InvalidInput

CONFIG_VERSION = 1

# Marker embeddings tell the reader what to do with a memory: continue the text
# after it (the long-context LM) or regenerate one unit of the hierarchy from it.
MARKERS = ("continue", "segment", "document", "paragraph", "sentence", "entity")


@dataclass(frozen=True)
class MemoryConfig:
    """Hyper-parameters of the memory network (not of training)."""

    # L: 128 tokens keep one compress step (m + L + m <= 256 positions) cheap on a CPU
    # while long enough that ratios 2..16 give 64..8 memory vectors.
    segment_len: int = 128
    # Largest m a checkpoint supports; ratio 2 at L=128 needs 64.
    max_memory_tokens: int = 64
    # LoRA rank 16 on every projection: the design probes memorised with rank 8-16;
    # both adapters stay a few MB, small enough to ship in the repository.
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    # Seed of the memory parameters' initialisation, so an untrained network is reproducible.
    init_seed: int = 0

    def __post_init__(self) -> None:
        if self.segment_len < 1:
            raise InvalidInput(f"segment_len must be >= 1, got {self.segment_len}")
        if not 1 <= self.max_memory_tokens <= self.segment_len:
            raise InvalidInput(
                f"max_memory_tokens must be in 1..segment_len, got {self.max_memory_tokens}"
            )
        if self.lora_rank < 1:
            raise InvalidInput(f"lora_rank must be >= 1, got {self.lora_rank}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InvalidInput(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise InvalidInput("target_modules must name at least one module")

    def memory_tokens_for(self, ratio: float) -> int:
        """m for a compression ratio L/m; rejects ratios this checkpoint cannot serve."""
        if not ratio > 0:
            raise InvalidInput(f"ratio must be positive, got {ratio}")
        m = max(1, round(self.segment_len / ratio))
        if m > self.max_memory_tokens:
            lowest = self.segment_len / self.max_memory_tokens
            raise InvalidInput(f"ratio {ratio} needs {m} memory tokens; the lowest ratio is {lowest:g}")
        return m

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemoryConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"unknown memory config field(s): {', '.join(unknown)}")
        data = dict(data)
        if "target_modules" in data:
            data["target_modules"] = tuple(data["target_modules"])
        return cls(**data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, indent=2)
