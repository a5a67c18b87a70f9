"""`r3mem eval perplexity`: long-context LM at an equal context budget.

The reader gets `--window W` positions, of which `--memory-tokens k` may be memory. Every
method scores the same tokens (tokens 1..127 of the 128 after a history; token 0 is skipped
because `no_context` cannot predict it), with the same frozen base LM as reader:

- `no_context`: the target alone;
- `window`: the last W raw tokens of the history (a plain LM with a W-token window);
- `memory`: the r3mem context memory (at most k positions) of everything before the last
  W - k raw tokens, then those W - k raw tokens. `--memory-kind activations` (the default,
  `r3mem.activation_memory`) keeps k key/value entries per head of the LM's own attention
  states; `snapshots` reads the compress adapter's vectors through `r3mem.context_lm`;
- `full_context`: the raw history up to `--full-window` positions (the ceiling).

A history of h tokens is written into memory from its own start, so `memory` at h sees
exactly h tokens. Only `memory` depends on h once h >= W; the other methods are scored once
per target and repeated in each history's rows. The paired difference `memory - window`
(mean per-target NLL, in nats) is reported with its 95 % interval over targets.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch
from tqdm.auto import tqdm

from r3mem import activation_memory
from r3mem.api import R3Mem
from r3mem.context_lm import assemble_prefix, memory_prefix, target_nll
from r3mem.errors import InvalidInput
from r3mem.eval.common import DEFAULT_DATA, EvalResult, add_common_arguments
from r3mem.eval.metrics import paired_interval
from r3mem.retention_data import HELD_OUT_BOOKS, HELD_OUT_CONVERSATIONS, conversation_stream
from r3mem.textio import read_corpus_text

TARGET_LEN = 128
METHODS = ("no_context", "window", "memory", "full_context")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "books")
    default = [str(DEFAULT_DATA / "books" / b) for b in HELD_OUT_BOOKS] + [
        f"{DEFAULT_DATA / 'locomo' / 'locomo_dev.json'}#{c}" for c in HELD_OUT_CONVERSATIONS]
    parser.set_defaults(data=",".join(default), limit=8)
    parser.add_argument("--history", default="1024,4096,16384,all",
                        help="history lengths in tokens before the target, comma-separated; 'all' = the whole text")
    parser.add_argument("--window", type=int, default=512, help="W: positions the reader gets for context")
    parser.add_argument("--memory-tokens", type=int, default=64, help="k: how many of the W may be memory")
    parser.add_argument("--full-window", type=int, default=2048,
                        help="positions for full_context (the ceiling; bounded for CPU cost)")
    parser.add_argument("--stride", type=int, default=2048, help="tokens between successive targets of a text")
    parser.add_argument("--memory-kind", choices=("activations", "snapshots"), default="activations",
                        help="activations: k key/value entries per head of the LM's own states (the product's); "
                             "snapshots: the compress adapter's vectors through the context reader")


def pinned_flags(args: argparse.Namespace) -> dict[str, str]:
    return {"--window": str(args.window), "--memory-tokens": str(args.memory_tokens),
            "--history": args.history, "--limit": str(args.limit), "--stride": str(args.stride),
            "--full-window": str(args.full_window), "--memory-kind": args.memory_kind}


def load_texts(spec: str) -> dict[str, str]:
    """name -> text for a comma-separated list of files; `file.json#conv-42` is a LoCoMo stream."""
    texts = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        path, _, conv = item.partition("#")
        source = Path(path)
        if not source.is_file():
            raise InvalidInput(f"evaluation data not found: {source}")
        if conv:
            try:
                found = [c for c in json.loads(source.read_text()) if c.get("sample_id") == conv]
            except (ValueError, AttributeError) as exc:
                raise InvalidInput(f"{source} is not a LoCoMo JSON list: {exc}") from exc
            if not found:
                raise InvalidInput(f"{source} has no conversation {conv!r}")
            texts[conv] = conversation_stream(found[0]["conversation"])
        else:
            texts[source.name] = read_corpus_text(source)
    if not texts:
        raise InvalidInput("--data names no text")
    return texts


def target_positions(n_tokens: int, first: int, stride: int, limit: int, segment_len: int, tail: int) -> list[int]:
    """Target starts >= `first`, `stride` apart, placed so the memory ends on a segment boundary."""
    shift = (-(first - tail)) % segment_len
    return list(range(first + shift, n_tokens - TARGET_LEN + 1, stride))[:limit]


def _memory_prefix(r3: R3Mem, ids: list[int], start: int, end: int, budget: int) -> torch.Tensor:
    """(1, ≤budget, d) memory of ids[start:end], its recurrence begun at `start`."""
    with torch.no_grad():
        return memory_prefix(r3.network, r3.context_reader, ids[start:end], budget)


class _WholePast:
    """The memory of a text's whole past (`--history all`), folded once as the targets advance.

    Targets of one text lie a multiple of the segment length apart, so each one's snapshots
    are the previous one's plus the segments between them: the text is written once instead
    of once per target, with exactly what `_memory_prefix(ids, 0, end)` computes.
    """

    def __init__(self, r3: R3Mem, ids: list[int], budget: int) -> None:
        self.r3, self.ids, self.budget = r3, ids, budget
        self.keep = min(r3.context_reader.config.verbatim, max(0, budget - r3.context_reader.config.slots))
        self.snapshots: list[torch.Tensor] = []
        self.state: torch.Tensor | None = None
        self.folded: int | None = None  # where the next segment starts

    @torch.no_grad()
    def prefix(self, end: int) -> torch.Tensor:
        net, seg = self.r3.network, self.r3.config.segment_len
        older_end = end - self.keep
        if self.folded is None:
            self.folded = older_end % seg  # the oldest partial segment is dropped, as write_snapshots does
        if (older_end - self.folded) % seg:
            raise ValueError("targets of one text must lie whole segments apart")
        while self.folded + seg <= older_end:
            state = net.initial(1, self.r3.context_reader.config.slots) if self.state is None else self.state
            segment = torch.tensor([self.ids[self.folded : self.folded + seg]], device=self.r3.device)
            self.state = net.write(state, segment)  # (1, slots, d)
            self.snapshots.append(self.state[0].float())
            self.folded += seg
        snapshots = (torch.stack(self.snapshots) if self.snapshots
                     else torch.zeros(0, self.r3.context_reader.config.slots, net.hidden_size))
        return assemble_prefix(net, self.r3.context_reader, snapshots, self.ids[:end], self.budget)


class _WholePastActivations:
    """`--history all` for the activation memory: each target's memory continues the previous one's."""

    def __init__(self, r3: R3Mem, ids: list[int], config: activation_memory.ActivationConfig) -> None:
        self.r3, self.ids, self.config = r3, ids, config
        self.memory = activation_memory.EMPTY
        self.folded: int | None = None

    def memory_of(self, end: int) -> activation_memory.ActivationMemory:
        seg = self.r3.config.segment_len
        if self.folded is None:
            self.folded = end % seg
        if (end - self.folded) % seg:
            raise ValueError("targets of one text must lie whole segments apart")
        with self.r3.network.adapter(None):
            while self.folded + seg <= end:
                segment = self.ids[self.folded : self.folded + seg]
                self.memory = activation_memory.fold(self.r3.network.causal_lm, self.memory, segment, self.config)
                self.folded += seg
        return self.memory


def _activation_nll(r3: R3Mem, config: activation_memory.ActivationConfig, ids: list[int], p: int, tail: int,
                    history: str, whole: _WholePastActivations | None) -> torch.Tensor:
    """Per-token NLL of the target at p after [activation memory ; last `tail` raw tokens]."""
    lm = r3.network.causal_lm
    if history == "all" and whole is not None:
        memory = whole.memory_of(p - tail)
    else:
        start = 0 if history == "all" else p - int(history)
        with r3.network.adapter(None):
            memory = activation_memory.fold_all(lm, ids[start : p - tail], r3.config.segment_len, config)
    with r3.network.adapter(None):
        return activation_memory.target_nll(lm, memory, ids[p - tail : p], ids[p : p + TARGET_LEN], config)


def run(args: argparse.Namespace, r3: R3Mem) -> EvalResult:
    if not 1 < args.memory_tokens < args.window:  # the activation memory keeps a sink and at least one more
        raise InvalidInput(f"--memory-tokens must be in 2..{args.window - 1}, got {args.memory_tokens}")
    tail = args.window - args.memory_tokens
    histories = [h.strip() for h in args.history.split(",") if h.strip()]
    numeric = [int(h) for h in histories if h != "all"]
    if any(h < args.window for h in numeric):
        raise InvalidInput(f"every --history must be >= --window ({args.window})")
    texts = load_texts(args.data)
    kv_config = activation_memory.ActivationConfig(budget=args.memory_tokens)
    nll: dict[tuple[str, str], list[float]] = {}  # (history, method) -> mean NLL per target
    owners: list[str] = []
    tokens = 0
    for name, text in texts.items():
        ids = r3.tokenize(text)
        first = max([*numeric, args.full_window, args.window])
        positions = target_positions(len(ids), first, args.stride, args.limit, r3.config.segment_len, tail)
        aligned = args.stride % r3.config.segment_len == 0
        activations = args.memory_kind == "activations"
        whole: _WholePast | None = _WholePast(r3, ids, args.memory_tokens) if aligned and not activations else None
        whole_kv = _WholePastActivations(r3, ids, kv_config) if aligned and activations else None
        if not positions:
            raise InvalidInput(f"{name} has {len(ids)} tokens: too short for history {first} + {TARGET_LEN}")
        for p in tqdm(positions, desc=f"perplexity {name}", unit="target", leave=False):
            target = ids[p : p + TARGET_LEN]
            fixed = {"no_context": target_nll(r3.network, None, [], target),
                     "window": target_nll(r3.network, None, ids[p - args.window : p], target),
                     "full_context": target_nll(r3.network, None, ids[max(0, p - args.full_window + TARGET_LEN): p],
                                                target)}
            for h in histories:
                if activations:
                    memory_nll = _activation_nll(r3, kv_config, ids, p, tail, h, whole_kv)
                else:
                    if h == "all" and whole is not None:
                        prefix = whole.prefix(p - tail)
                    else:
                        start = 0 if h == "all" else p - int(h)
                        prefix = _memory_prefix(r3, ids, start, p - tail, args.memory_tokens)
                    memory_nll = target_nll(r3.network, prefix, ids[p - tail : p], target)
                for method, values in {**fixed, "memory": memory_nll}.items():
                    nll.setdefault((h, method), []).append(float(values.mean()))
            owners.append(name)
            tokens += len(target) - 1
    positions_of = {"no_context": 0, "window": args.window, "memory": args.window,
                    "full_context": args.full_window}
    rows = [{"method": method, "history": h, "ppl": math.exp(statistics.fmean(nll[(h, method)])),
             "n": len(nll[(h, method)]), "context_positions": positions_of[method]}
            for h in histories for method in METHODS]
    deltas = []
    for h in histories:
        diffs = [m - w for m, w in zip(nll[(h, "memory")], nll[(h, "window")], strict=True)]
        mean, low, high = paired_interval(diffs)
        deltas.append({"history": h, "memory_minus_window_nats": round(mean, 5),
                       "ci95_low": round(low, 5), "ci95_high": round(high, 5), "n": len(diffs)})
    # The second floor: a longer past must not hurt. Paired, longest history against the shortest.
    longer = {}
    if len(histories) > 1:
        first_h, last_h = histories[0], histories[-1]
        diffs = [b - a for a, b in zip(nll[(first_h, "memory")], nll[(last_h, "memory")], strict=True)]
        mean, low, high = paired_interval(diffs)
        longer = {"longest": last_h, "shortest": first_h, "nats": round(mean, 5), "ci95_low": round(low, 5),
                  "ci95_high": round(high, 5), "n": len(diffs)}
    by_text = {name: {f"{h}/{method}": round(math.exp(statistics.fmean(
        [v for v, o in zip(nll[(h, method)], owners, strict=True) if o == name])), 3)
        for h in histories for method in METHODS} for name in texts}
    return EvalResult("perplexity", args.data, r3.checkpoint_fingerprint, r3.base.name, rows,
                      {"window": args.window, "memory_tokens": args.memory_tokens, "target_len": TARGET_LEN,
                       "memory_kind": args.memory_kind,
                       "full_window": args.full_window, "memory_minus_window": deltas,
                       "memory_longest_minus_shortest": longer, "by_text": by_text,
                       "targets": owners, "nll_per_target": {f"{h}/{m}": [round(v, 5) for v in vals]
                                                             for (h, m), vals in nll.items()}})


def summary(result: EvalResult) -> str:
    """The paired `memory - window` lines printed under the table."""
    lines = ["memory - window (mean NLL per target, nats; 95 % interval over targets):"]
    for d in result.extra["memory_minus_window"]:
        lines.append(f"  history {d['history']:>6}: {d['memory_minus_window_nats']:+.4f} "
                     f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]  n={d['n']}")
    longer = result.extra.get("memory_longest_minus_shortest")
    if longer:
        lines.append(f"memory at history {longer['longest']} - at {longer['shortest']}: {longer['nats']:+.4f} "
                     f"[{longer['ci95_low']:+.4f}, {longer['ci95_high']:+.4f}]  n={longer['n']} "
                     "(<= 0: a longer past helps)")
    return "\n".join(lines)


def plot(result: EvalResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    histories = list(dict.fromkeys(r["history"] for r in result.rows))
    for method in METHODS:
        ax.plot(histories, [next(r["ppl"] for r in result.rows if r["method"] == method and r["history"] == h)
                            for h in histories], marker="o", label=method)
    ax.set(xlabel="history tokens before the target", ylabel="perplexity of the next 128 tokens",
           title=f"equal budget W={result.extra['window']}, k={result.extra['memory_tokens']} ({result.model})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
