"""`r3mem eval locomo`: long-horizon conversational memory on LoCoMo, measured on the product.

Each conversation gets a FRESH store (an SQLite file of its own), filled turn by turn through
`MemoryStore.add`, as an agent would: every turn is one record `[date] speaker: text`
(plus the caption of an image it shares), with its `dia_id` in the record's metadata. Every
retrieval method is then `MemoryStore.recall(method=...)` on that store:

- `r3mem`: the store's default recall (`r3mem.store.recall.DEFAULT_METHOD`), whatever it is,
  answered as `MemoryStore.ask` answers: grounded, or abstaining (`r3mem.eval.answering`).
- `r3mem_free`: the same recall, answered by the free-generation reader as every baseline is.
- `bm25`, `dense`, `bm25_dense`: the store's lexical index, its MiniLM vectors, and their
  reciprocal-rank fusion.
- `full_context`: the whole conversation as text (the reader keeps its last window).
- `no_memory`: the question alone.

recall_at_k counts a question's evidence dia_ids among the first k recalled turns (k is
`--top-k`), recall_at_10 among the first 10; questions without evidence are left out of both.
The reader answers from the first k turns, in time order. Category 5 (adversarial) is scored
against `adversarial_answer` when there is no `answer`.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from r3mem.answers.confidence import Calibration, read_calibration
from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.eval.answering import GROUNDED, answer
from r3mem.eval.common import EvalResult, add_common_arguments, require_path
from r3mem.eval.metrics import paired_interval, percentile, recall_at_k
from r3mem.eval.qa import READER_WINDOW, parse_methods
from r3mem.store import Hit, MemoryStore, Namespace
from r3mem.store.location import open_backend
from r3mem.store.recall import DEFAULT_METHOD

METHODS = ("r3mem", "r3mem_free", "bm25", "dense", "bm25_dense", "full_context", "no_memory")
RETRIEVAL = {"r3mem": DEFAULT_METHOD, "r3mem_free": DEFAULT_METHOD, "bm25": "bm25", "dense": "dense",
             "bm25_dense": "bm25_dense"}
DEEP_K = 10  # recall_at_10
NAMESPACE = Namespace(user="locomo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "locomo/locomo_dev.json")
    parser.set_defaults(limit=20)
    parser.add_argument("--conversations", type=int, help="use only the first K conversations (default: all)")
    parser.add_argument("--only", help="use only these conversations (comma-separated sample ids, e.g. the ones "
                        "no threshold was fitted on: conv-41,conv-42,conv-43)")
    parser.add_argument("--top-k", type=int, default=5, help="turns recalled per question")
    parser.add_argument("--ratio", type=float, default=4, help="compression ratio of the turn memories")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th question of each conversation "
                        "before --limit (LoCoMo lists its questions by category, category 5 last)")
    parser.add_argument("--answers", type=int, help="answer only the first N questions of each conversation "
                        "(recall is measured on all of --limit; default: answer all)")
    parser.add_argument("--no-text", action="store_true", help="add every turn memory-only (store_text false): "
                        "recall finds them by what their memories give back; nothing is answered")
    parser.add_argument("--stores", help="keep each conversation's SQLite store in this directory, and reuse "
                        "one that is already complete there (then add_p50_ms is not measured)")
    parser.add_argument("--calibration", help="grounded answers' calibration JSON instead of the packaged one "
                        "(scripts/fit_answer_confidence.py --out), e.g. one fitted without the --only conversations")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))


@dataclass
class Turn:
    dia_id: str
    text: str


@dataclass
class Question:
    question: str
    answer: str
    evidence: list[str]
    category: int


def _session_numbers(conv: dict) -> list[int]:
    found = (re.fullmatch(r"session_(\d+)", k) for k in conv)
    return sorted(int(m.group(1)) for m in found if m and isinstance(conv[m.group(0)], list))


def turns(sample: dict) -> list[Turn]:
    """The conversation's turns in order, each as `[date] speaker: text`."""
    conv = sample["conversation"]
    out = []
    for n in _session_numbers(conv):
        date = conv.get(f"session_{n}_date_time", "")
        for turn in conv[f"session_{n}"]:
            text = f"[{date}] {turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares {turn['blip_caption']}]"
            out.append(Turn(turn["dia_id"], text))
    return out


def questions(sample: dict, limit: int | None, every: int = 1) -> list[Question]:
    out = []
    for qa in sample["qa"][::every][:limit]:
        answer = qa["answer"] if "answer" in qa else qa.get("adversarial_answer", "")
        # A few upstream evidence entries hold several ids in one string ("D8:6; D9:17").
        evidence = [e for item in qa.get("evidence", []) for e in re.split(r"[;,\s]+", item) if e]
        out.append(Question(qa["question"], str(answer), evidence, int(qa["category"])))
    return out


def load_locomo(path: Path, conversations: int | None) -> list[dict]:
    try:
        samples = json.loads(path.read_text(encoding="utf-8"))[:conversations]
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{path} is not LoCoMo JSON: {exc}") from exc
    if not samples or not all(isinstance(s, dict) and "conversation" in s and "qa" in s for s in samples):
        raise InvalidInput(f"{path} is not LoCoMo JSON: expected a list of {{conversation, qa}} objects")
    return samples


def fill(store: MemoryStore, records: list[Turn], store_text: bool = True) -> list[float]:
    """Add the turns one at a time, as an agent would; returns each add's milliseconds."""
    add_ms = []
    for turn in tqdm(records, desc="add", unit="turn", leave=False):
        start = time.perf_counter()
        store.add(NAMESPACE, text=turn.text, levels=("document",), metadata={"dia_id": turn.dia_id},
                  store_text=store_text)
        add_ms.append((time.perf_counter() - start) * 1000)
    return add_ms


def open_store(r3: R3Mem, folder: Path, sample_id: str, records: list[Turn], ratio: float,
               store_text: bool = True) -> tuple[MemoryStore, list[float]]:
    """The conversation's store, filled; reused as is when `folder` already holds it complete."""
    name = sample_id + ("" if store_text else "-no-text")
    store = MemoryStore(open_backend(f"sqlite:///{folder / (name + '.sqlite3')}"), r3, ratio=ratio)
    have = store.stats(NAMESPACE)["records"]
    if have == len(records):
        return store, []
    store.delete_all(NAMESPACE)
    return store, fill(store, records, store_text)


@dataclass
class Outcome:
    method: str
    category: int
    question: int = 0  # the question's place in the run, to pair methods' answers
    f1: float | None = None
    exact_match: float | None = None
    abstained: bool | None = None
    context_tokens: int = 0
    recall: float | None = None
    recall_deep: float | None = None
    recall_ms: float | None = None


def recall_outcome(store: MemoryStore, method: str, q: Question, top_k: int) -> tuple[Outcome, list[Hit]]:
    """One timed recall through the store; the outcome and the top-k turns in time order."""
    start = time.perf_counter()
    hits = store.recall(q.question, NAMESPACE, top_k=max(top_k, DEEP_K), method=RETRIEVAL[method],
                        reconstruct=False)  # a memory-only turn's text is not needed to score recall
    outcome = Outcome(method, q.category, recall_ms=(time.perf_counter() - start) * 1000)
    found = [h.record.metadata["dia_id"] for h in hits]
    if q.evidence:
        outcome.recall = recall_at_k(found, q.evidence, top_k)
        outcome.recall_deep = recall_at_k(found, q.evidence, DEEP_K)
    return outcome, sorted(hits[:top_k], key=lambda h: h.record.created_at)


def run_conversation(r3: R3Mem, store: MemoryStore | None, methods: list[str], records: list[Turn], qs: list[Question],
                     args: argparse.Namespace, bar, first: int = 0,
                     calibration: Calibration | None = None) -> list[Outcome]:
    """Every method on one conversation's questions; only the first `--answers` are answered."""
    full_text = "\n".join(t.text for t in records)
    outcomes = []
    for n, q in enumerate(qs):
        for method in methods:
            context = full_text if method == "full_context" else ""
            hits: list[Hit] = []
            if method in RETRIEVAL and store is not None:
                outcome, hits = recall_outcome(store, method, q, args.top_k)
                context = "\n".join(h.text for h in hits)
            else:
                outcome = Outcome(method, q.category)
            outcome.question = first + n
            if (args.answers is None or n < args.answers) and not args.no_text:
                outcome.context_tokens = min(len(r3.tokenize(context)), READER_WINDOW) if context else 0
                scored = answer(r3, method, q.question, [q.answer], context, hits, calibration)
                outcome.f1, outcome.exact_match, outcome.abstained = scored.f1, scored.exact_match, scored.abstained
            outcomes.append(outcome)
            bar.update(1)
    return outcomes


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarise(method: str, outcomes: list[Outcome], add_ms: list[float]) -> list[dict]:
    """One row per category present, then `1-4` (the answerable ones), then `all`."""
    outcomes = [o for o in outcomes if o.method == method]
    rows = []
    for category in [*sorted({o.category for o in outcomes}), "1-4", "all"]:
        group = [o for o in outcomes if category in ("all", o.category) or (category == "1-4" and o.category != 5)]
        answered = [o for o in group if o.f1 is not None]
        recall_ms = [o.recall_ms for o in group if o.recall_ms is not None]
        timed = method in RETRIEVAL and bool(add_ms)
        rows.append({
            "method": method, "category": category,
            "recall_at_k": _mean([o.recall for o in group]), "recall_at_10": _mean([o.recall_deep for o in group]),
            "f1": _mean([o.f1 for o in answered]), "exact_match": _mean([o.exact_match for o in answered]),
            "abstained": _mean([o.abstained for o in answered]),
            "context_tokens": _mean([o.context_tokens for o in answered]),
            "add_p50_ms": percentile(add_ms, 50) if timed else None,
            "recall_p50_ms": percentile(recall_ms, 50) if recall_ms else None,
            "recall_p95_ms": percentile(recall_ms, 95) if recall_ms else None,
            "n": len(group), "answered": len(answered),
        })
    return rows


def _calibration(path: str | None) -> Calibration | None:
    """`--calibration`, read before any store is built so a bad file fails at once."""
    try:
        return read_calibration(path) if path else None
    except ValueError as error:
        raise InvalidInput(str(error)) from None


def run(args: argparse.Namespace, r3: R3Mem) -> EvalResult:
    samples = load_locomo(require_path(args.data), args.conversations)
    if args.only:
        samples = [s for s in samples if s.get("sample_id") in args.only.split(",")]
    methods = parse_methods(args.methods, METHODS)
    calibration = _calibration(args.calibration)
    work = [(s.get("sample_id", str(i)), turns(s), questions(s, args.limit, args.every)) for i, s in enumerate(samples)]
    bar = tqdm(total=sum(len(qs) for _, _, qs in work) * len(methods), desc="locomo", unit="answer")
    outcomes: list[Outcome] = []
    add_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="r3mem-locomo-") as tmp:
        folder = Path(args.stores) if args.stores else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for sample_id, records, qs in work:
            store: MemoryStore | None = None
            ms: list[float] = []
            if set(methods) & set(RETRIEVAL):
                store, ms = open_store(r3, folder, sample_id, records, args.ratio, not args.no_text)
            add_ms += ms
            outcomes += run_conversation(r3, store, methods, records, qs, args, bar, len(outcomes) // len(methods),
                                         calibration)
            if store is not None:
                store.close()
    bar.close()
    rows = [row for method in methods for row in summarise(method, outcomes, add_ms)]
    extra = {"ratio": args.ratio, "memory_tokens": r3.config.memory_tokens_for(args.ratio), "top_k": args.top_k,
             "default_method": DEFAULT_METHOD, "store_text": not args.no_text,
             "conversations": [sample_id for sample_id, _, _ in work],
             "trained": r3.trained, "adds": len(add_ms), "add_p95_ms": percentile(add_ms, 95) if add_ms else None,
             # every add pays its text, index row and vector; one in `memory_batch` also the batch's memories
             "add_mean_ms": sum(add_ms) / len(add_ms) if add_ms else None,
             "paired_f1": paired_f1(outcomes, methods)}
    return EvalResult("locomo", str(args.data), r3.checkpoint_fingerprint, r3.base.name, rows, extra)


def paired_f1(outcomes: list[Outcome], methods: list[str]) -> list[dict]:
    """Grounded answers against each other answering method, question by question over categories
    1-4: the mean F1 difference and its 95 % interval (the answers floor compares the two)."""
    f1 = {(o.method, o.question): o.f1 for o in outcomes if o.f1 is not None and o.category != 5}
    out = []
    for grounded in [m for m in methods if m in GROUNDED]:
        for other in [m for m in methods if m != grounded]:
            diffs = [f - f1[(other, q)] for (m, q), f in f1.items() if m == grounded and (other, q) in f1]
            if len(diffs) > 1:
                mean, low, high = paired_interval(diffs)
                out.append({"method": grounded, "against": other, "f1_diff": round(mean, 4),
                            "ci95_low": round(low, 4), "ci95_high": round(high, 4), "n": len(diffs)})
    return out


def summary(result: EvalResult) -> str:
    """The paired F1 lines printed under the table (nothing when no grounded method answered)."""
    lines = [f"{d['method']} - {d['against']} F1 over categories 1-4: {d['f1_diff']:+.4f} "
             f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]  n={d['n']} (95 % interval, paired by question)"
             for d in result.extra.get("paired_f1", [])]
    return "\n".join(lines)


def plot(result: EvalResult, path: Path) -> None:
    """F1 and recall@k per method over all categories (grouped bars)."""
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r["category"] == "all"]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([i - 0.2 for i in x], [r["f1"] for r in rows], width=0.4, label="F1")
    ax.bar([i + 0.2 for i in x], [r["recall_at_k"] or 0.0 for r in rows], width=0.4, label="recall@k")
    ax.set_xticks(list(x), [r["method"] for r in rows])
    ax.set(ylim=(0, 1), ylabel="score",
           title=f"LoCoMo ({result.model}, top-{result.extra.get('top_k')}, ratio {result.extra.get('ratio')})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
