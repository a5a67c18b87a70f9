"""`r3mem eval reconstruct`: how much of a segment comes back from memory, per compression ratio.

r3mem compresses each segment on its own into k = segment_len // ratio memory vectors and
expands it; the baselines get the same budget of k tokens (`truncate`: the first k; `prune`:
the k most surprising, refilled by the base LM). Every method is scored against the same
source segment, so the rows differ only in what the budget was spent on.
"""

from __future__ import annotations

import argparse
import importlib
import math
from pathlib import Path
from statistics import fmean, stdev

import torch
from tqdm.auto import tqdm

from r3mem.decode.options import (
    DEFAULT_BEAMS,
    DEFAULT_DECODING,
    DEFAULT_GUIDANCE,
    DEFAULT_SAMPLES,
    GUIDANCE_HELP,
    Decoding,
)
from r3mem.entities import RuleEntityExtractor
from r3mem.errors import InvalidInput
from r3mem.eval import metrics
from r3mem.eval.common import EvalResult, add_common_arguments, require_path
from r3mem.textio import read_corpus_text

# averaged per segment; entity recall is pooled instead (see `average`)
METRICS = ("token_accuracy", "aligned_token_accuracy", "exact_match", "bleu4", "rougeL", "char_similarity")
METHODS = ("r3mem", "truncate", "prune")
# Segments per method and ratio whose source and regenerated text go into the JSON: a figure
# says how much came back, a sample shows what a miss looks like (a shift, a paraphrase, a loop).
SAMPLES = 2


def parse_list(text: str) -> list[float | int]:
    """"2,4,8" -> [2, 4, 8]; integral values stay ints so rows and plots read cleanly."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need one or more positive numbers, got {text!r}")
    return [int(v) if v.is_integer() else v for v in values]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "books/pg174.txt")
    parser.set_defaults(limit=16)
    parser.add_argument("--segment-len", type=int,
                        help="tokens per segment, at most the checkpoint's (default: the checkpoint's, 128)")
    parser.add_argument("--ratios", type=parse_list, default=[2, 4, 8, 16], help="comma-separated (default 2,4,8,16)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--beams", type=int, default=DEFAULT_BEAMS,
                        help=f"beam-search width of r3mem's expansion; 1 is greedy (default {DEFAULT_BEAMS})")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help="samples drawn beside the beams, the candidate re-compressing nearest the memory "
                             f"kept (cycle-consistent decoding; default {DEFAULT_SAMPLES}: the top beam)")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)


# -- data ---------------------------------------------------------------------------------
def read_texts(path: str) -> list[str]:
    """One text per file: the file itself, or every `*.txt` under a directory, in name order."""
    source = require_path(path)
    files = sorted(p for p in source.rglob("*.txt") if p.is_file()) if source.is_dir() else [source]
    if not files:
        raise InvalidInput(f"no .txt files under {source}")
    return [read_corpus_text(f) for f in files]


def cut_segments(r3, texts: list[str], segment_len: int, limit: int | None) -> list[list[int]]:
    """The first `limit` full segments of `segment_len` tokens, file by file.

    Only full segments are kept, so every segment is compressed at exactly the stated ratio.
    """
    out: list[list[int]] = []
    for text in texts:
        ids = r3.tokenize(text)
        for start in range(0, len(ids) - segment_len + 1, segment_len):
            if limit is not None and len(out) >= limit:
                return out
            out.append(ids[start : start + segment_len])
    return out


# -- scoring ------------------------------------------------------------------------------
def score(ref_ids: list[int], ref_text: str, hyp_ids: list[int], hyp_text: str, entities: list[str]) -> dict:
    hits, total = metrics.entity_hits(entities, hyp_text)
    return {
        "source": ref_text,
        "reconstruction": hyp_text,
        "entity_hits": hits,
        "entity_total": total,
        "token_accuracy": metrics.token_accuracy(ref_ids, hyp_ids),
        "aligned_token_accuracy": metrics.aligned_token_accuracy(ref_ids, hyp_ids),
        "exact_match": metrics.exact_match(ref_text, hyp_text),
        "bleu4": metrics.bleu4(ref_text, hyp_text),
        "rougeL": metrics.rouge_l(ref_text, hyp_text),
        "char_similarity": metrics.char_similarity(ref_text, hyp_text),
    }


def average(method: str, ratio, scores: list[dict]) -> dict:
    """Per-segment means, except entity recall: hits over all source entities, pooled, so a
    segment without entities does not count as a perfect recall (None when there are none).

    Token accuracy, which the floors apply to, also gets its standard error over segments (None
    for one segment), so a reader can tell a margin from noise."""
    hits, total = sum(s["entity_hits"] for s in scores), sum(s["entity_total"] for s in scores)
    means = {m: fmean(s[m] for s in scores) for m in METRICS}
    accuracies = [s["token_accuracy"] for s in scores]
    se = stdev(accuracies) / math.sqrt(len(accuracies)) if len(accuracies) > 1 else None
    return {"method": method, "ratio": ratio, **means, "entity_recall": hits / total if total else None,
            "entities": total, "token_accuracy_se": se, "n": len(scores)}


# -- methods ------------------------------------------------------------------------------
def r3mem_scores(r3, segments: list[list[int]], k: int, entities: list[list[str]], desc: str,
                 decoding: Decoding = DEFAULT_DECODING) -> list[dict]:
    """Compress each segment alone into exactly k vectors, then expand all of them in batches.

    A segment's detokenised text may re-tokenise differently, so the reference ids are those
    of the text that was compressed. Each snapshot was written from the initial memory, which
    cycle-consistent selection re-compresses from; source digests are not consulted, so the
    figures say what the memory alone gives back.
    """
    texts = [r3.detokenize(seg) for seg in segments]
    ratio = r3.config.segment_len / k  # exactly k vectors, also when segments are shorter than the checkpoint's
    memories = [r3.compress(t, ratio=ratio) for t in tqdm(texts, desc=f"{desc} compress", leave=False)]
    snapshots = torch.cat([m.snapshots for m in memories])  # (S, k, d): one per segment
    initial = r3.network.initial(len(snapshots), k).detach().cpu()
    parts = iter(r3.expand_snapshots(snapshots, [c for m in memories for c in m.token_counts], initial,
                                     progress=True, decoding=decoding))
    out = []
    for text, memory, ents in zip(texts, memories, entities, strict=True):
        hyp = [t for _ in range(len(memory)) for t in next(parts)]
        out.append(score(r3.tokenize(text), text, hyp, r3.detokenize(hyp), ents))
    return out


def baseline_scores(r3, module, segments: list[list[int]], k: int, entities: list[list[str]], desc: str) -> list[dict]:
    """The baseline stores `module.compress(...)` (k tokens) and rebuilds from that alone."""
    out = []
    for seg, ents in zip(tqdm(segments, desc=desc, leave=False), entities, strict=True):
        kept = module.compress(r3, seg, k)
        hyp = module.expand(r3, kept, len(seg))
        out.append(score(seg, r3.detokenize(seg), hyp, r3.detokenize(hyp), ents))
    return out


def check_budget(r3, segment_len: int, ratios: list) -> dict:
    """ratio -> k, refusing what the checkpoint cannot serve before any model work starts."""
    if not 1 <= segment_len <= r3.config.segment_len:
        raise InvalidInput(f"--segment-len must be in 1..{r3.config.segment_len} (the checkpoint's segment "
                           f"length), got {segment_len}")
    budget = {}
    for ratio in ratios:
        k = int(segment_len // ratio)
        if not 1 <= k <= r3.config.max_memory_tokens:
            raise InvalidInput(f"ratio {ratio} gives {k} memory tokens for {segment_len}-token segments; "
                               f"this checkpoint serves 1..{r3.config.max_memory_tokens}")
        budget[ratio] = k
    return budget


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        named = ", ".join(unknown) or "(none given)"
        raise InvalidInput(f"unknown method(s) {named}; choose from {', '.join(METHODS)}")
    return methods


def decoding_of(args: argparse.Namespace) -> Decoding:
    """The decoding this run expands r3mem's memories under: its flags, else the library's defaults."""
    return Decoding(beams=getattr(args, "beams", DEFAULT_BEAMS), samples=getattr(args, "samples", DEFAULT_SAMPLES),
                    guidance=getattr(args, "guidance", DEFAULT_GUIDANCE))


def pinned_flags(args: argparse.Namespace) -> dict[str, str]:
    """The decoding settings this run expands under, for its recorded command (`eval.common.spell_out`)."""
    decoding = decoding_of(args)
    return {"--beams": str(decoding.beams), "--samples": str(decoding.samples), "--guidance": f"{decoding.guidance:g}"}


def run(args: argparse.Namespace, r3) -> EvalResult:
    torch.manual_seed(args.seed)
    segment_len = args.segment_len or r3.config.segment_len
    methods = parse_methods(getattr(args, "methods", ",".join(METHODS)))
    decoding = decoding_of(args)
    budget = check_budget(r3, segment_len, args.ratios)
    segments = cut_segments(r3, read_texts(args.data), segment_len, args.limit)
    if not segments:
        raise InvalidInput(f"{args.data} holds no full segment of {segment_len} tokens")
    extractor = RuleEntityExtractor()
    entities = [[e.text for e in extractor.extract(r3.detokenize(seg))] for seg in segments]
    rows, samples, per_segment = [], [], []
    for method in methods:
        for ratio, k in budget.items():
            desc = f"{method} x{ratio}"
            if method == "r3mem":
                scores = r3mem_scores(r3, segments, k, entities, desc, decoding)
            else:
                module = importlib.import_module(f"r3mem.eval.baselines.{method}")
                scores = baseline_scores(r3, module, segments, k, entities, desc)
            rows.append(average(method, ratio, scores))
            # every segment's accuracy, so two runs on the same segments compare pairwise
            per_segment.append({"method": method, "ratio": ratio,
                                "token_accuracy": [s["token_accuracy"] for s in scores]})
            samples += [{"method": method, "ratio": ratio, "segment": i,
                         **{key: s[key] for key in ("token_accuracy", "aligned_token_accuracy", "source",
                                                    "reconstruction")}}
                        for i, s in enumerate(scores[:SAMPLES])]
    return EvalResult(task="reconstruct", data=str(args.data), checkpoint=r3.checkpoint_fingerprint,
                      model=r3.base.name, rows=rows,
                      extra={"segment_len": segment_len, "segments": len(segments), "trained": r3.trained,
                             **decoding.record(),
                             "budget_tokens": {str(r): k for r, k in budget.items()}, "samples": samples,
                             "segment_token_accuracy": per_segment})


def plot(result: EvalResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("token_accuracy", "bleu4"), strict=True):
        for method in dict.fromkeys(r["method"] for r in result.rows):
            rows = [r for r in result.rows if r["method"] == method]
            ax.plot([r["ratio"] for r in rows], [r[metric] for r in rows], marker="o", label=method)
        ratios = sorted({r["ratio"] for r in result.rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.minorticks_off()
        ax.set_xlabel("ratio (segment tokens / stored vectors or tokens)")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend()
    trained = "" if result.extra.get("trained", True) else " (untrained checkpoint)"
    fig.suptitle(f"Reconstruction vs ratio, {result.model}{trained}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
