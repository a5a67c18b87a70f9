"""`r3mem demo`: compress a bundled public-domain passage and show what comes back."""

from __future__ import annotations

import textwrap
import time
from importlib.resources import files
from pathlib import Path
from tempfile import TemporaryDirectory

from r3mem.api import R3Mem
from r3mem.eval.metrics import token_accuracy
from r3mem.memory_file import Memory


def demo_passage() -> str:
    """Opening of *Pride and Prejudice* (Jane Austen, 1813; public domain)."""
    return (files("r3mem") / "data" / "demo_passage.txt").read_text(encoding="utf-8")


def _side_by_side(left: str, right: str, width: int = 48) -> str:
    wrap = textwrap.TextWrapper(width=width, replace_whitespace=True)
    a, b = wrap.wrap(left) or [""], wrap.wrap(right) or [""]
    rows = [f"{x:<{width}} | {y}" for x, y in zip(a + [""] * len(b), b + [""] * len(a), strict=False)]
    return "\n".join(r for r in rows if r.strip(" |"))


def run_demo(r3: R3Mem | None = None, ratio: float = 4, say=print, load_s: float | None = None) -> dict:
    """Compress, save, reload and expand the passage; print figures; return them.

    `load_s` is the caller's model-load time when it loaded `r3` itself.
    """
    t0 = time.perf_counter()
    r3 = r3 or R3Mem.load()
    load_s = load_s if load_s is not None else time.perf_counter() - t0
    text = demo_passage()
    say(f"model: {r3.base.name}   checkpoint: {r3.checkpoint_fingerprint}   load: {load_s:.2f} s")
    if not r3.trained:
        say("NOTE: no trained checkpoint found; the adapters are untrained, so the "
            "reconstruction below is expected to be poor.")
    t0 = time.perf_counter()
    memory = r3.compress(text, ratio=ratio, progress=True)
    compress_s = time.perf_counter() - t0
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.r3m"
        memory.save(path)
        file_bytes = path.stat().st_size
        memory = Memory.load(path)
    t0 = time.perf_counter()
    pieces = r3.expand_ids(memory, progress=True)
    expand_s = time.perf_counter() - t0
    ids = r3.tokenize(text)
    recon_ids = [t for p in pieces for t in p]
    accuracy = token_accuracy(ids, recon_ids)
    figures = {
        "source_tokens": memory.source_tokens,
        "segments": len(memory),
        "memory_vectors_per_segment": memory.memory_tokens,
        "ratio": memory.ratio,
        "source_bytes_utf8": len(text.encode()),
        "memory_file_bytes": file_bytes,
        "compress_s": compress_s,
        "expand_s": expand_s,
        "token_accuracy": accuracy,
        "segments_verified": sum(memory.verify(i, part) is True for i, part in enumerate(pieces)),
    }
    say(f"{memory.source_tokens} tokens in {len(memory)} segment(s) -> {memory.memory_tokens} "
        f"memory vectors each (ratio {memory.ratio:g}); text {figures['source_bytes_utf8']} B, "
        f".r3m file {file_bytes} B (fp16)")
    say(f"compress {compress_s:.2f} s ({memory.source_tokens / compress_s:.0f} tok/s), "
        f"expand {expand_s:.2f} s ({memory.source_tokens / expand_s:.0f} tok/s)")
    for i, part in enumerate(pieces):
        start = sum(memory.token_counts[:i])
        original = r3.detokenize(ids[start : start + memory.token_counts[i]])
        verdict = "verified exact" if memory.verify(i, part) else "differs from the source digest"
        say(f"\n-- segment {i}: original | reconstruction "
            f"(token accuracy {token_accuracy(ids[start:start + len(part)], part):.3f}; {verdict})")
        say(_side_by_side(original, r3.detokenize(part)))
    say(f"\ntoken accuracy over the passage: {accuracy:.3f}; {figures['segments_verified']} of {len(memory)} "
        "segment(s) verified exact against the digests the .r3m file keeps")
    return figures
