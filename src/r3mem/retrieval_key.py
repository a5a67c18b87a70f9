"""The retrieval key: a head trained so that a question lands near the records that answer it.

R³Mem's retrieval claim needs a key made for retrieval, not the memory averaged. A text's key
is read from the base LM itself: its hidden states after layer `layer` (the upper-middle of the
network, where states carry meaning more than next-token form), mean-pooled over the text's
tokens and standardised, then mapped by a linear head to a unit vector. Questions and records
have separate heads (a question does not look like its answer), trained contrastively with the
other records of a conversation or article as negatives (`r3mem.train.key_contrastive`).
Only the first `layer + 1` transformer blocks run, so a key costs two thirds of a forward pass.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from r3mem.errors import CheckpointError, InvalidInput
from r3mem.memory_net import MemoryNetwork

KEY_FILE = "key.safetensors"
KEY_CONFIG = "key.json"
_BATCH = 32


@dataclass(frozen=True)
class KeyConfig:
    """Where the key reads the LM and how large it is."""

    # Layer 20 of SmolLM2-135M's 30 led layers 10 and 30 on held-out LoCoMo when fused with BM25 and
    # MiniLM (docs/results.md, *Retrieval key*).
    layer: int = 20
    dim: int = 256  # key width: small enough to store per record, wide enough not to limit recall
    max_tokens: int = 96  # a record's key reads its first tokens; chat turns and facts are shorter

    def __post_init__(self) -> None:
        for name in ("layer", "dim", "max_tokens"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"key config: {name} must be >= 1, got {getattr(self, name)}")


class KeyHead(nn.Module):
    """Standardisation of the LM features, then one linear map for questions and one for records."""

    mean: Tensor  # (features,) over the training texts
    std: Tensor

    def __init__(self, features: int, config: KeyConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.query = nn.Linear(features, config.dim)
        self.record = nn.Linear(features, config.dim)
        self.record.load_state_dict(self.query.state_dict())  # one map to start from: symmetric at init

    def forward(self, features: Tensor, kind: str) -> Tensor:
        """(n, features) LM features -> (n, dim) unit keys; `kind` is "query" or "record"."""
        x = (features - self.mean) / self.std / features.shape[-1] ** 0.5
        head = self.query if kind == "query" else self.record
        return F.normalize(head(x), dim=-1)

    def save(self, directory: str | Path) -> None:
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(root / KEY_FILE), metadata={"format": "r3mem-key"})
        (root / KEY_CONFIG).write_text(json.dumps(asdict(self.config), sort_keys=True, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> KeyHead | None:
        """The head saved in `directory`, or None when it has none."""
        root = Path(directory)
        if not (root / KEY_FILE).is_file():
            return None
        try:
            state = load_file(str(root / KEY_FILE))
            head = cls(state["mean"].shape[0], KeyConfig(**json.loads((root / KEY_CONFIG).read_text())))
            head.load_state_dict(state)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(f"corrupt retrieval key in {root}: {exc}") from exc
        return head.eval()


@contextmanager
def _first_blocks(net: MemoryNetwork, count: int):
    """Run only the first `count` transformer blocks: the key never reads the ones above."""
    model = net.causal_lm.model
    layers = model.layers
    model.layers = layers[:count]
    try:
        yield
    finally:
        model.layers = layers


@torch.no_grad()
def lm_features(net: MemoryNetwork, tokenizer, texts: list[str], config: KeyConfig) -> Tensor:
    """(n, d) mean of the base LM's states after block `config.layer` over each text's tokens.

    Right padding keeps every text at positions 0..len-1, so a feature never depends on what it
    was batched with. An empty text has no tokens and gets a zero feature.
    """
    out = []
    device = net.initial_memory.device
    for start in range(0, len(texts), _BATCH):
        batch = tokenizer(texts[start : start + _BATCH], padding=True, truncation=True,
                          max_length=config.max_tokens, return_tensors="pt", add_special_tokens=False)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        if ids.shape[1] == 0:
            out.append(torch.zeros(len(ids), net.hidden_size))
            continue
        with net.adapter(None), _first_blocks(net, config.layer + 1):
            hidden = net.causal_lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                         use_cache=False).hidden_states[config.layer]  # (b, T, d)
        weights = mask.unsqueeze(-1).float()
        out.append(((hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)).cpu())
    return torch.cat(out) if out else torch.zeros(0, net.hidden_size)


def encode_keys(net: MemoryNetwork, tokenizer, head: KeyHead, texts: list[str], kind: str) -> np.ndarray:
    """(n, dim) float32 unit keys for `texts` as questions (`kind="query"`) or records (`"record"`)."""
    with torch.no_grad():
        return head(lm_features(net, tokenizer, texts, head.config), kind).numpy().astype(np.float32)
