"""Context memory: what fell out of the window, folded into k vectors the plain base LM reads.

Retention (R³Mem's first claim) is judged at an equal context budget: a reader with W
positions gets either the last W raw tokens, or k memory vectors of everything older
followed by the last W - k raw tokens. The reader here is the frozen base LM itself, with
no adapter, so any difference between the two comes from the memory alone and the raw
tokens are read exactly as a plain LM reads them.

The history is written segment by segment by the compress adapter (`MemoryNetwork.compress`,
the same recurrence reconstruction uses) at `slots` vectors per segment. Those snapshots are
packed into k positions hierarchically, the paper's coarse-to-fine refinement applied over
time: the newest segments keep a block of `slots` vectors each, older ones are merged into
blocks that cover 2, 4, 8 ... segments (slot-wise means), and the oldest block absorbs the
rest, so any history fits in k vectors and recent text stays sharpest. `ContextReader`, the
only part trained for this (by distillation from the base LM reading the raw history, see
`r3mem.train.context_distill`), maps each block into the LM's input space and tells it how
coarse the block is.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from r3mem.errors import CheckpointError, InvalidInput

CONTEXT_FILE = "context.safetensors"
CONTEXT_CONFIG = "context.json"


@dataclass(frozen=True)
class ContextConfig:
    """Shape of the context memory; saved beside its weights."""

    # Vectors per 128-token segment: ratio 16, the coarsest the compress adapter serves, so a
    # 64-vector budget holds eight blocks and the hierarchy reaches far back.
    slots: int = 8
    # Block coarseness levels the reader tells apart (a block covers up to 2**(levels-1) segments).
    levels: int = 12
    # The finest level of the hierarchy is the text itself: the newest `verbatim` tokens before the
    # raw window are kept as their own token embeddings (ratio 1) inside the memory's budget, and
    # only older text is compressed. 0 compresses everything.
    verbatim: int = 0
    # Width of a residual MLP beside the linear map (0: the linear map alone). With it, a learned
    # per-level gate also scales the nearest-token embedding, so the reader can fade that guess out.
    mlp: int = 0

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise InvalidInput(f"context config: slots must be >= 1, got {self.slots}")
        if self.levels < 1:
            raise InvalidInput(f"context config: levels must be >= 1, got {self.levels}")
        if self.verbatim < 0:
            raise InvalidInput(f"context config: verbatim must be >= 0, got {self.verbatim}")
        if self.mlp < 0:
            raise InvalidInput(f"context config: mlp must be >= 0, got {self.mlp}")


def block_sizes(n_segments: int, n_blocks: int) -> list[int]:
    """Segments per block, oldest block first, growing into the past.

    With n_segments <= n_blocks every segment is its own block. Otherwise every block is
    used, the newest two hold one segment each, and sizes grow by one at a time from the
    oldest block on, each block at most twice the size of the newer one beside it, until they
    cover the history; when every block is at that cap the oldest takes the rest. The sizes
    always sum to n_segments, and the newest text keeps the finest resolution.
    """
    if n_segments <= 0 or n_blocks <= 0:
        return []
    if n_segments <= n_blocks:
        return [1] * n_segments
    sizes = [1] * n_blocks  # newest first
    left = n_segments - n_blocks
    while left:
        grown = False
        for j in range(n_blocks - 1, 1, -1):
            if left and sizes[j] < 2 * sizes[j - 1]:
                sizes[j] += 1
                left -= 1
                grown = True
        if not grown:
            sizes[-1] += left
            left = 0
    return sizes[::-1]


def pack_blocks(snapshots: Tensor, budget: int) -> tuple[Tensor, Tensor]:
    """(S, slots, d) segment snapshots, oldest first -> (≤budget, d) vectors and (≤budget,) levels.

    Each block is the slot-wise mean of its segments' snapshots; its level is log2 of how many
    segments it covers, so the reader knows a detailed block from a summary.
    """
    n_seg, slots, dim = snapshots.shape
    sizes = block_sizes(n_seg, max(1, budget // slots))
    vectors, levels, start = [], [], 0
    for size in sizes:
        vectors.append(snapshots[start : start + size].float().mean(0))  # (slots, d)
        levels.append(torch.full((slots,), math.ceil(math.log2(size)), dtype=torch.long))
        start += size
    if not vectors:
        return snapshots.new_zeros(0, dim).float(), torch.zeros(0, dtype=torch.long)
    return torch.cat(vectors), torch.cat(levels)


class ContextReader(nn.Module):
    """Maps packed memory blocks into the base LM's input-embedding space.

    Each block vector starts as the input embedding of its nearest vocabulary token (a slot
    pools its chunk's token embeddings, so that is a word the chunk holds): a prefix of real
    tokens, which the frozen LM reads without harm, where raw snapshots as inputs made its
    next-token loss several nats worse (docs/retention.md). A learned linear residual (zero at
    init) and a vector per coarseness level (zero at init) are what distillation trains.
    """

    def __init__(self, dim: int, config: ContextConfig) -> None:
        super().__init__()
        self.config = config
        self.residual = nn.Linear(dim, dim)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)
        self.level = nn.Embedding(config.levels, dim)
        nn.init.zeros_(self.level.weight)
        if config.mlp:
            out = nn.Linear(config.mlp, dim)  # zero: the MLP adds nothing until it learns to
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
            self.mlp = nn.Sequential(nn.Linear(dim, config.mlp), nn.GELU(), out)
            self.gate = nn.Embedding(config.levels, 1)  # scale of the nearest token, per level: 1 at init
            nn.init.ones_(self.gate.weight)

    def forward(self, vectors: Tensor, levels: Tensor, table: Tensor) -> Tensor:
        """(k, d) packed blocks, (k,) levels, (V, d) input embeddings -> (k, d) LM inputs."""
        unit = table / table.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        nearest = (vectors.to(unit.dtype) @ unit.T).argmax(-1)  # (k,)
        levels = levels.clamp(max=self.config.levels - 1)
        out = table[nearest].float()
        if self.config.mlp:
            out = out * self.gate(levels) + self.mlp(vectors.float())
        return out + self.residual(vectors.float()) + self.level(levels)

    def save(self, directory: str | Path) -> None:
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(root / CONTEXT_FILE), metadata={"format": "r3mem-context"})
        (root / CONTEXT_CONFIG).write_text(json.dumps(asdict(self.config), sort_keys=True, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, dim: int) -> ContextReader | None:
        """The reader saved in `directory`, or None when it has none (memory then reads untrained)."""
        root = Path(directory)
        if not (root / CONTEXT_FILE).is_file():
            return None
        try:
            config = ContextConfig(**json.loads((root / CONTEXT_CONFIG).read_text()))
            reader = cls(dim, config)
            reader.load_state_dict({k: v.float() for k, v in load_file(str(root / CONTEXT_FILE)).items()})
        except (OSError, ValueError, TypeError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(f"corrupt context reader in {root}: {exc}") from exc
        return reader
