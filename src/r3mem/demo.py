"""`r3mem demo`: compress a passage the training never saw, regenerate it, show both side by side."""

from __future__ import annotations

import functools
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from tempfile import TemporaryDirectory

from r3mem.api import R3Mem
from r3mem.decode.options import DEFAULT_BEAMS, Decoding
from r3mem.errors import InvalidInput
from r3mem.fidelity import token_accuracy
from r3mem.memory_file import Memory

# Held out on purpose: chesterton-brown.txt is one of the two validation books
# (`TrainConfig.val_books`), which no training step reads. The opening of a training book (the demo's
# passage before) flatters the model, and a famous text may be memorised by the base LM.
HELD_OUT_SOURCE = ('the opening of "The Absence of Mr Glass", from G. K. Chesterton\'s The Wisdom of '
                   "Father Brown (1914, public domain)")
HELD_OUT_NOTE = ("held out: this book (chesterton-brown.txt) is one of the two validation books; "
                 "no training step ever read it")
# Fewer beams than the library's 16, so the demo ends in a few minutes on a 2-core CPU, where segments
# are expanded one at a time (to show each as it comes) and lose batching. On this passage (3 segments,
# ratio 4, step-3140 checkpoint, 1 thread on a 2-core AMD EPYC shared with two other jobs, 2026-12-07)
# token accuracy was 0.838 / 0.843 / 0.851 with 4 / 8 / 16 beams, expansion 77 / 162 / 368 s.
DEMO_BEAMS = 8
DEMO_DECODING = Decoding(beams=DEMO_BEAMS)  # the library's defaults otherwise


def demo_passage() -> str:
    """The demo's held-out passage (see `HELD_OUT_SOURCE`): about 370 tokens, 3 segments."""
    return (files("r3mem") / "data" / "heldout_passage.txt").read_text(encoding="utf-8")


def _side_by_side(left: str, right: str, width: int = 48) -> str:
    wrap = textwrap.TextWrapper(width=width, replace_whitespace=True)
    a, b = wrap.wrap(left) or [""], wrap.wrap(right) or [""]
    rows = [f"{x:<{width}} | {y}" for x, y in zip(a + [""] * len(b), b + [""] * len(a), strict=False)]
    return "\n".join(r for r in rows if r.strip(" |"))


@contextmanager
def _ticking() -> Iterator[None]:
    """On a terminal, rewrite `… N s` on stderr every second, so a long step visibly moves."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    t0 = time.perf_counter()

    def tick() -> None:
        while not done.wait(1.0):
            sys.stderr.write(f"\r  … {time.perf_counter() - t0:.0f} s")
            sys.stderr.flush()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def run_demo(r3: R3Mem | None = None, ratio: float = 4, say: Callable[[str], None] | None = None,
             load_s: float | None = None, decoding: Decoding = DEMO_DECODING, text: str | None = None,
             source: str = "the given text", note: str | None = None) -> dict:
    """Compress, save, reload and expand `text` segment by segment, printing each segment as it comes
    back; return the figures.

    Without `text` it is the held-out passage, and `source` and `note` say where it comes from and
    that training never read it. `load_s` is the caller's model-load time when it loaded `r3` itself.
    """
    if text is None:
        text, source, note = demo_passage(), HELD_OUT_SOURCE, HELD_OUT_NOTE
    say = say or functools.partial(print, flush=True)
    if not isinstance(decoding, Decoding):
        raise InvalidInput(f"decoding must be a Decoding, got {type(decoding).__name__}")
    beams = decoding.beams
    t0 = time.perf_counter()
    r3 = r3 or R3Mem.load()
    load_s = load_s if load_s is not None else time.perf_counter() - t0
    say(f"model: {r3.base.name}   checkpoint: {r3.checkpoint_fingerprint}   load: {load_s:.2f} s")
    say(f"text: {source}")
    if note:
        say(note)
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
    say(f"{memory.source_tokens} tokens in {len(memory)} segment(s) -> {memory.memory_tokens} memory vectors "
        f"each (ratio {memory.ratio:g}); text {len(text.encode())} B, .r3m file {file_bytes} B (fp16); "
        f"compressed in {compress_s:.2f} s ({memory.source_tokens / compress_s:.0f} tok/s)")
    say(f"decoding: {beams}-beam search, pool guidance {decoding.guidance:g} (the library's default is "
        f"{DEFAULT_BEAMS} beams; fewer here so the demo ends sooner: `r3mem demo --beams {DEFAULT_BEAMS}`)")
    ids = r3.tokenize(text)
    pieces: list[list[int]] = []
    verified = 0
    t0 = time.perf_counter()
    for i in range(len(memory)):
        say(f"\n[{i + 1}/{len(memory)}] expanding segment {i} ({memory.token_counts[i]} tokens, {beams} beams)")
        started = time.perf_counter()
        with _ticking():
            part = r3.expand_ids(memory, segment=i, decoding=decoding)[0]
        pieces.append(part)
        start = sum(memory.token_counts[:i])
        source_ids = ids[start : start + memory.token_counts[i]]
        exact = memory.verify(i, part) is True
        verified += exact
        verdict = "verified exact" if exact else "differs from the source digest"
        say(f"-- segment {i}: original | reconstruction (token accuracy {token_accuracy(source_ids, part):.3f}; "
            f"{verdict}; {time.perf_counter() - started:.1f} s)")
        say(_side_by_side(r3.detokenize(source_ids), r3.detokenize(part)))
    expand_s = time.perf_counter() - t0
    accuracy = token_accuracy(ids, [t for p in pieces for t in p])
    figures = {
        "source_tokens": memory.source_tokens,
        "segments": len(memory),
        "memory_vectors_per_segment": memory.memory_tokens,
        "ratio": memory.ratio,
        "beams": beams,
        "guidance": decoding.guidance,
        "source_bytes_utf8": len(text.encode()),
        "memory_file_bytes": file_bytes,
        "compress_s": compress_s,
        "expand_s": expand_s,
        "token_accuracy": accuracy,
        "segments_verified": verified,
    }
    say(f"\nexpanded in {expand_s:.1f} s ({memory.source_tokens / expand_s:.1f} tok/s, one segment at a time)")
    say(f"token accuracy over the passage: {accuracy:.3f}; {verified} of {len(memory)} "
        "segment(s) verified exact against the digests the .r3m file keeps")
    return figures
