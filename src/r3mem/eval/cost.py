"""`r3mem eval cost`: what a stored token costs in bytes, and how fast text goes in and out.

Bytes per source token are reported for the memory as stored in three forms (fp16 tensors,
int8 tensors, the actual `.r3m` file) next to the raw UTF-8 text and its gzip -9, on the
same text: a memory only pays off where it beats plain text compression or offers what gzip
cannot (answering from the vectors without expanding them).
"""

from __future__ import annotations

import argparse
import gzip
import resource
import tempfile
import time
from pathlib import Path

import torch

from r3mem.eval.common import EvalResult, add_common_arguments
from r3mem.eval.reconstruct import parse_list, read_texts
from r3mem.memory_file import Memory

INT8_STORED = "m*d int8 values + one 2-byte fp16 scale per vector (symmetric per-row absmax quantisation)"
FP16_STORED = "m*d fp16 values (2 bytes each) per segment"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "books/pg174.txt")
    parser.set_defaults(limit=2048)
    parser.add_argument("--ratios", type=parse_list, default=[4, 8], help="comma-separated (default 4,8)")


def quantise_int8(snapshots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-vector absmax: q = round(x / s), s = max|x| / 127, s kept as fp16."""
    x = snapshots.float()
    scale = (x.abs().amax(-1, keepdim=True) / 127).clamp(min=torch.finfo(torch.float16).tiny)
    scale = scale.to(torch.float16)
    q = torch.round(x / scale.float()).clamp(-127, 127).to(torch.int8)
    return q, scale


def int8_row(memory: Memory, ratio, n_tokens: int) -> dict:
    """Bytes from the quantised tensors themselves, and the error that quantisation costs."""
    q, scale = quantise_int8(memory.snapshots)
    nbytes = q.numel() * q.element_size() + scale.numel() * scale.element_size()
    x = memory.snapshots.float()
    err = (q.float() * scale.float() - x).pow(2).mean().sqrt() / x.pow(2).mean().sqrt().clamp(min=1e-12)
    return {"method": "r3mem_int8", "ratio": ratio, "bytes_per_token": nbytes / n_tokens, "stored": INT8_STORED,
            "rel_rms_error": float(err)}


def memory_rows(memory: Memory, ratio, n_tokens: int) -> list[dict]:
    s, m, d = memory.snapshots.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "memory.r3m"
        memory.save(path)
        file_bytes = path.stat().st_size
    return [
        {"method": "r3mem_fp16", "ratio": ratio, "bytes_per_token": s * m * d * 2 / n_tokens, "stored": FP16_STORED},
        int8_row(memory, ratio, n_tokens),
        {"method": "r3mem_file", "ratio": ratio, "bytes_per_token": file_bytes / n_tokens,
         "stored": ".r3m file: fp16 snapshots + token counts + safetensors header and metadata"},
    ]


def text_rows(text: str, n_tokens: int) -> list[dict]:
    data = text.encode("utf-8")
    return [
        {"method": "raw_utf8", "ratio": None, "bytes_per_token": len(data) / n_tokens, "stored": "UTF-8 text"},
        {"method": "gzip", "ratio": None, "bytes_per_token": len(gzip.compress(data, compresslevel=9, mtime=0))
         / n_tokens, "stored": "gzip -9 of the UTF-8 text"},
    ]


def throughput_row(r3, text: str, ratio) -> tuple[Memory, dict]:
    """Time compress of the text and expansion of the whole memory, as `r3mem expand` runs it."""
    t0 = time.perf_counter()
    memory = r3.compress(text, ratio=ratio, progress=True)
    compress_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r3.expand_ids(memory, progress=True)
    expand_s = time.perf_counter() - t0
    n = memory.source_tokens
    return memory, {"method": "throughput", "ratio": ratio, "compress_tok_s": n / compress_s,
                    "expand_tok_s": n / expand_s, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux), model included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace, r3) -> EvalResult:
    torch.manual_seed(args.seed)
    source = "\n\n".join(read_texts(args.data))
    text = r3.detokenize(r3.tokenize(source)[: args.limit])
    n_tokens = len(r3.tokenize(text))  # what compress counts: the text may re-tokenise differently
    r3.compress(text[:200], ratio=args.ratios[0])  # warm-up: first calls pay one-off allocations
    bytes_rows, speed_rows = [], []
    for ratio in args.ratios:
        memory, speed = throughput_row(r3, text, ratio)
        bytes_rows += memory_rows(memory, ratio, n_tokens)
        speed_rows.append(speed)
    rows = bytes_rows + text_rows(text, n_tokens) + speed_rows
    return EvalResult(task="cost", data=str(args.data), checkpoint=r3.checkpoint_fingerprint, model=r3.base.name,
                      rows=rows, extra={"tokens": n_tokens, "segment_len": r3.config.segment_len,
                                        "peak_rss_note": "process peak so far, model load included; it never falls"})


def plot(result: EvalResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if "bytes_per_token" in r]
    labels = [r["method"] if r["ratio"] is None else f"{r['method']}\nx{r['ratio']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    bars = ax.bar(range(len(rows)), [r["bytes_per_token"] for r in rows], color="tab:blue")
    ax.bar_label(bars, fmt="%.3g", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per source token (log)")
    ax.set_title(f"Storage cost per token, {result.model}, {result.extra.get('tokens', '?')} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
