"""The shipped model and the fixed windows of text the decoding probes measure on.

Shared by `probe_memory_rerank.py` and `probe_pool_guidance.py` so both draw the same windows:
`text="train"` takes them from training books (settings chosen there never see held-out text),
`"val"` from the held-out ones.
"""

from __future__ import annotations

from pathlib import Path

import torch

from r3mem.api import R3Mem
from r3mem.train.config import TrainConfig
from r3mem.train.data import TokenCorpus, load_texts, step_rng

CONFIG = "configs/smollm2-135m-rec-lm-128-c5.toml"


def load_windows(count: int, length: int, text: str = "train", config: str = CONFIG) -> tuple[R3Mem, torch.Tensor]:
    """The shipped model (gradients off) and `count` windows of `length` token ids (count, length)."""
    torch.set_grad_enabled(False)
    r3 = R3Mem.load()
    r3.network.eval()
    cfg = TrainConfig.from_toml(config)
    train_texts, val_texts = load_texts(Path(cfg.data_dir), cfg.val_books)
    corpus = TokenCorpus.build(train_texts[:40] if text == "train" else val_texts, r3.tokenize)
    windows = corpus.windows(step_rng(cfg.seed, -1 % (2**31), 99), count, 2 * length)
    return r3, torch.as_tensor(windows)[:, :length]
