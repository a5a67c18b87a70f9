"""Cached draws for context distillation: pay the teacher and the compressor once per draw.

A distillation step in `r3mem.train.context_distill` spends most of its time on work that
does not depend on the reader being trained: the teacher (the base LM reading up to a dozen
raw segments) and the compress adapter writing the history's snapshots. Both are computed
once per draw here and stored as one small file: the packed memory blocks and their levels,
the verbatim and raw tail token ids, and the teacher's top-`top_k` log-probabilities at the
target positions (the rest of its mass kept as one bucket). A training step then runs only
the student, so it costs a forward and backward pass over `budget + tail + target` tokens,
and the same draws can be read for several epochs.

Draws are deterministic in (seed, index) and each is written atomically, so building resumes
where it stopped and a trainer can read the draws already built while the builder goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from r3mem.api import R3Mem
from r3mem.context_lm import base_hidden, write_snapshots
from r3mem.context_memory import pack_blocks


def draw_window(seed: int, index: int, texts: list[np.ndarray], segment_len: int, min_segments: int,
                max_segments: int, extra: int) -> tuple[list[int], int]:
    """(token ids, segments of history) of draw `index`: `n_seg` segments then `extra` tokens."""
    rng = np.random.default_rng([seed, index])
    n_seg = int(rng.integers(min_segments, max_segments + 1))
    width = n_seg * segment_len + extra
    lengths = np.array([len(t) if len(t) > width else 0 for t in texts], dtype=np.float64)
    text = texts[int(rng.choice(len(texts), p=lengths / lengths.sum()))]
    begin = int(rng.integers(0, len(text) - width))
    return [int(t) for t in text[begin : begin + width]], n_seg


def sparse_kl(student: Tensor, top_idx: Tensor, top_logp: Tensor) -> Tensor:
    """KL(teacher || student) per position, with the teacher known by its top-k and a rest bucket.

    student (..., V) log-probs; top_idx (..., K) token ids; top_logp (..., K) teacher log-probs.
    The teacher's mass outside its top-k is one outcome, matched by the student's mass there.
    """
    picked = student.gather(-1, top_idx)  # (..., K)
    p = top_logp.exp()
    rest = (1 - p.sum(-1)).clamp(min=1e-8)
    student_rest = (1 - picked.exp().sum(-1)).clamp(min=1e-8)
    return (p * (top_logp - picked)).sum(-1) + rest * (rest.log() - student_rest.log())


@torch.no_grad()
def build_draw(r3: R3Mem, ids: list[int], n_seg: int, *, budget: int, verbatim: int, slots: int,
               target: int, top_k: int) -> dict[str, Tensor]:
    """Everything a distillation step needs of one draw that does not depend on the reader."""
    net, seg_len, device = r3.network, r3.config.segment_len, r3.device
    history, rest = ids[: n_seg * seg_len], ids[n_seg * seg_len :]  # rest = tail + target
    full = base_hidden(net, None, torch.tensor([ids], device=device))  # (1, H+R, d)
    teacher = net.causal_lm.lm_head(full[0, -target:-1]).float().log_softmax(-1)  # (T-1, V)
    top_logp, top_idx = teacher.topk(top_k, dim=-1)  # (T-1, K)
    window = base_hidden(net, None, torch.tensor([history[-budget:] + rest[:-1]], device=device))
    baseline = net.causal_lm.lm_head(window[0, -target + 1 :]).float().log_softmax(-1)
    kl_window = F.kl_div(baseline, teacher, log_target=True, reduction="batchmean")
    keep = min(verbatim, max(0, budget - slots))
    older = history[: len(history) - keep]
    snapshots = write_snapshots(net, [older], slots, seg_len)[0]  # (S, slots, d)
    vectors, levels = pack_blocks(snapshots, budget - keep)
    return {
        "vectors": vectors.to(torch.float16).contiguous(), "levels": levels.to(torch.int32),
        "recent": torch.tensor(history[len(history) - keep :], dtype=torch.int32),
        "rest": torch.tensor(rest, dtype=torch.int32),
        "top_idx": top_idx.to(torch.int32).contiguous(), "top_logp": top_logp.contiguous(),
        "kl_window": kl_window.reshape(1).float(),
        "kl_window_sparse": sparse_kl(baseline, top_idx, top_logp).mean().reshape(1),
        "segments": torch.tensor([n_seg], dtype=torch.int32),
    }


def draw_path(cache_dir: Path, index: int) -> Path:
    return cache_dir / f"draw-{index:06d}.safetensors"


def save_draw(cache_dir: Path, index: int, tensors: dict[str, Tensor]) -> None:
    """Write atomically, so a reader never sees half a draw and a killed builder resumes cleanly."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = draw_path(cache_dir, index)
    tmp = final.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, final)


def built_draws(cache_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in cache_dir.glob("draw-*.safetensors"))


def load_draw(cache_dir: Path, index: int) -> dict[str, Tensor]:
    return load_file(str(draw_path(cache_dir, index)))


def write_manifest(cache_dir: Path, settings: dict) -> None:
    """The settings the draws were built with; a trainer refuses a cache built for another shape."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            raise ValueError(f"{cache_dir} was built with {old}, not {settings}: use another cache_dir")
        return
    path.write_text(json.dumps(settings, sort_keys=True, indent=2) + "\n")
