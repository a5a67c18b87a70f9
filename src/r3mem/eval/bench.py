"""`r3mem bench`: throughput, peak memory and load times on this machine."""

from __future__ import annotations

import platform
import resource
import time
from importlib.resources import files

import torch

from r3mem.api import R3Mem
from r3mem.base_model import default_gguf_path
from r3mem.decode.options import DEFAULT_BEAMS, DEFAULT_DECODING, Decoding
from r3mem.fidelity import token_accuracy


def bench_passage() -> str:
    """Opening of *Pride and Prejudice* (public domain): the text every published bench figure was
    measured on, kept so figures stay comparable (the demo now shows a held-out book instead)."""
    return (files("r3mem") / "data" / "demo_passage.txt").read_text(encoding="utf-8")


def time_gguf_load() -> float:
    """Seconds to de-quantise the default GGUF (what a first load costs before caching)."""
    from transformers import AutoModelForCausalLM

    gguf = default_gguf_path()
    t0 = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return time.perf_counter() - t0


def run_bench(tokens: int = 1024, ratio: float = 4, gguf: bool = True,
              model: str | None = None, checkpoint: str | None = None) -> dict:
    """Measure one configuration; every figure is what this process saw, nothing estimated."""
    result: dict = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads",
                    "torch": torch.__version__, "ratio": ratio}
    if gguf and model is None:
        result["load_gguf_s"] = time_gguf_load()
    t0 = time.perf_counter()
    r3 = R3Mem.load(model=model, checkpoint=checkpoint)
    result["load_cached_s"] = time.perf_counter() - t0
    passage = bench_passage()
    ids = r3.tokenize(passage)
    text = r3.detokenize((ids * (tokens // len(ids) + 1))[:tokens])
    r3.compress(passage[:200], ratio=ratio)  # warm-up: first calls pay one-off allocations
    t0 = time.perf_counter()
    memory = r3.compress(text, ratio=ratio)
    seconds = time.perf_counter() - t0
    result.update(compress_tokens=memory.source_tokens, compress_tok_s=memory.source_tokens / seconds)
    # one call over the whole memory, as `r3mem expand` does: segments are generated in batches,
    # at the default beam width and greedily (the speed end of the fidelity/speed knob)
    expanded = memory.source_tokens
    reader = r3.expansion_reader  # made before the clock starts: a process pays for it once
    result.update(expand_tokens=expanded, expand_beams=DEFAULT_BEAMS,
                  expand_dtype=str(reader.dtype).removeprefix("torch."))
    # fidelity beside speed, on the same tokens: position-wise agreement with what was compressed
    # (the bench passage is training text, so this is a check that speed did not cost fidelity, not
    # a held-out figure: `r3mem eval reconstruct` gives those)
    source = r3.tokenize(text)  # what compress() split into segments
    for key, decoding in (("expand", DEFAULT_DECODING), ("expand_greedy", Decoding(beams=1))):
        t0 = time.perf_counter()
        parts = r3.expand_ids(memory, decoding=decoding)
        result[f"{key}_tok_s"] = expanded / (time.perf_counter() - t0)
        result[f"{key}_token_accuracy"] = token_accuracy(source, [t for part in parts for t in part])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def format_table(result: dict) -> str:
    rows = [
        ("model load, GGUF de-quantise (first run)", result.get("load_gguf_s"), "s"),
        ("model load, cached safetensors", result["load_cached_s"], "s"),
        (f"compress throughput ({result['compress_tokens']} tokens)", result["compress_tok_s"], "tok/s"),
        (f"expand throughput ({result['expand_tokens']} tokens, {result.get('expand_beams', 1)} beams, "
         f"{result.get('expand_dtype', 'float32')})",
         result["expand_tok_s"], "tok/s"),
        (f"expand throughput ({result['expand_tokens']} tokens, greedy)", result.get("expand_greedy_tok_s"), "tok/s"),
        (f"expand accuracy, {result.get('expand_beams', 1)} beams (bench text, not held out)",
         result.get("expand_token_accuracy"), ""),
        ("expand accuracy, greedy (bench text, not held out)", result.get("expand_greedy_token_accuracy"), ""),
        ("peak RSS", result["peak_rss_mb"], "MB"),
    ]
    lines = [f"{'measure':<54} {'value':>10}  unit", "-" * 72]
    lines += [f"{name:<54} {value:>10.{2 if unit else 3}f}  {unit}" for name, value, unit in rows if value is not None]
    lines.append(f"machine: {result['machine']}, torch {result['torch']}, ratio {result['ratio']:g}")
    return "\n".join(lines)
