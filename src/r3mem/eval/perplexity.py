"""`r3mem eval perplexity`: a book segment's perplexity given its history, four ways.

Every method scores the same tokens: tokens 1..L-1 of a 128-token target segment
(token 0 is skipped because `no_context` cannot predict it).

- `no_context`: the base LM on the target alone.
- `memory`: the recurrent r3mem memory of the history (m vectors), read by the
  `continue` marker.
- `truncated`: the last m raw tokens of the history, the same budget as the memory.
- `full_context`: the raw history up to the model window, the ceiling.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.eval.common import EvalResult, add_common_arguments, require_path
from r3mem.textio import read_corpus_text

TARGET_LEN = 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "books/pg174.txt")
    parser.add_argument("--history", default="512,1024,2048,all",
                        help="history lengths in tokens, comma-separated; 'all' = the book up to the target")
    parser.add_argument("--ratio", type=float, default=4)
    parser.add_argument("--window", type=int, default=4096, help="raw-context cap for full_context")
    parser.add_argument("--stride", type=int, default=1024, help="tokens between successive targets")
    if parser.get_default("limit") is None:
        parser.set_defaults(limit=4)


@torch.no_grad()
def base_nll(r3: R3Mem, context: list[int], target: list[int]) -> tuple[float, int]:
    """Summed NLL of target[1:] under the plain base LM after `context` (adapters off)."""
    net = r3.network
    ids = torch.tensor([context + target], device=r3.device)
    with net.adapter(None):
        hidden = net.causal_lm.model(input_ids=ids).last_hidden_state  # (1, C+T, d)
    start = len(context)  # hidden[start + i] predicts target[i + 1]
    stats = net.token_nll(hidden[:, start : start + len(target) - 1], ids[:, start + 1 :], None)
    return float(stats.nll_sum), stats.n_tokens


@torch.no_grad()
def memory_nll(r3: R3Mem, history: list[int], target: list[int], m: int) -> tuple[float, int]:
    """Summed NLL of target[1:] read from the recurrent memory of `history`."""
    net = r3.network
    segments = [torch.tensor(s, device=r3.device) for s in r3.segments(history)]
    memory = net.initial(1, m)
    for snapshot in net.compress(segments, m):
        memory = snapshot.unsqueeze(0)  # (1, m, d): the memory after the latest segment
    stats = net.read(memory, torch.tensor([target], device=r3.device), marker="continue", score_from=1)
    return float(stats.nll_sum), stats.n_tokens


def _targets(n_tokens: int, longest: int, stride: int, limit: int) -> list[int]:
    first = max(longest, TARGET_LEN)
    positions = list(range(first, n_tokens - TARGET_LEN, stride))[:limit]
    if not positions:
        raise InvalidInput(f"the book has {n_tokens} tokens: too short for history {longest} + {TARGET_LEN}")
    return positions


def run(args: argparse.Namespace, r3: R3Mem) -> EvalResult:
    ids = r3.tokenize(read_corpus_text(require_path(args.data)))
    m = r3.config.memory_tokens_for(args.ratio)
    lengths = [h.strip() for h in args.history.split(",") if h.strip()]
    numeric = [int(h) for h in lengths if h != "all"]
    positions = _targets(len(ids), max(numeric, default=0), args.stride, args.limit)
    totals: dict[tuple[str, str], list[float]] = {}
    per_target: dict[str, dict[str, list[float]]] = {}  # history -> method -> mean NLL per target
    bar = tqdm(total=len(lengths) * len(positions), desc="perplexity", unit="item")
    for h in lengths:
        for p in positions:
            history = ids[: p] if h == "all" else ids[p - int(h) : p]
            target = ids[p : p + TARGET_LEN]
            runs = {
                "no_context": (base_nll(r3, [], target), 0),
                "memory": (memory_nll(r3, history, target, m), m),
                "truncated": (base_nll(r3, history[-m:], target), m),
                "full_context": (base_nll(r3, history[-args.window :], target), min(len(history), args.window)),
            }
            for method, ((nll, count), ctx) in runs.items():
                acc = totals.setdefault((h, method), [0.0, 0, 0.0, 0.0, 0])
                acc[0] += nll
                acc[1] += count
                acc[2] += len(history)
                acc[3] += ctx
                acc[4] += 1
                per_target.setdefault(h, {}).setdefault(method, []).append(round(nll / max(1, count), 5))
            bar.update(1)
    bar.close()
    rows = [{"method": method, "history": h, "history_tokens": round(acc[2] / acc[4]),
             "context_tokens": round(acc[3] / acc[4]), "ppl": math.exp(acc[0] / acc[1]), "n": acc[4]}
            for (h, method), acc in totals.items()]
    return EvalResult("perplexity", str(args.data), r3.checkpoint_fingerprint, r3.base.name, rows,
                      {"ratio": args.ratio, "memory_tokens": m, "target_len": TARGET_LEN,
                       "nll_per_target": per_target})


def plot(result: EvalResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in result.rows):
        pts = sorted((r["history_tokens"], r["ppl"]) for r in result.rows if r["method"] == method)
        ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.set(xscale="log", xlabel="history tokens", ylabel="perplexity of the next 128 tokens",
           title=f"long-context LM ({result.model}, ratio {result.extra.get('ratio')})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
