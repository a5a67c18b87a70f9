"""`r3mem eval locomo`: long-horizon conversational memory on LoCoMo, five ways.

Each conversation gets FRESH stores: nothing is shared across conversations, so a
question can only be answered from its own conversation. Every turn becomes a record
`[date] speaker: text` (plus the caption of an image it shares), added one at a time.

- `r3mem`: each record is compressed to its own memory; recall ranks records by query
  likelihood, the mean log p(question | record memory) under the `continue` marker.
  Retrieval is from memory alone; the reader then reads the recalled turns' text.
- `bm25`, `dense`: the baseline retrievers over the raw turns, same top-k, same reader.
- `full_context`: the whole conversation as text (the reader keeps its last window).
- `no_memory`: the question alone.

recall_at_k counts a question's evidence dia_ids among the retrieved turns; questions
without evidence are left out of it. Category 5 (adversarial) is scored against
`adversarial_answer` when there is no `answer`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from r3mem import reader
from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.eval.common import EvalResult, add_common_arguments, require_path
from r3mem.eval.metrics import percentile, recall_at_k, squad_f1
from r3mem.eval.qa import READER_WINDOW, parse_methods

METHODS = ("r3mem", "bm25", "dense", "full_context", "no_memory")
RETRIEVAL = ("r3mem", "bm25", "dense")
_SCORE_BATCH = 32  # records scored per forward pass in r3mem recall


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "locomo/locomo_dev.json")
    parser.set_defaults(limit=20)
    parser.add_argument("--conversations", type=int, help="use only the first K conversations (default: all)")
    parser.add_argument("--top-k", type=int, default=5, help="turns recalled per question")
    parser.add_argument("--ratio", type=float, default=4, help="compression ratio of the turn memories")
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


def questions(sample: dict, limit: int | None) -> list[Question]:
    out = []
    for qa in sample["qa"][:limit]:
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


class R3MemStore:
    """One memory per record; recall by query likelihood under each record's memory."""

    def __init__(self, r3: R3Mem, ratio: float) -> None:
        self.r3, self.ratio = r3, ratio
        self.memories: list[torch.Tensor] = []  # (m, d) each: the memory after the record's last segment

    def __len__(self) -> int:
        return len(self.memories)

    def add(self, text: str) -> None:
        self.memories.append(self.r3.compress(text, ratio=self.ratio).snapshots[-1])

    @torch.no_grad()
    def nll(self, query: str) -> list[float]:
        """Mean NLL per query token under each record's memory (lower = more relevant)."""
        net, device = self.r3.network, self.r3.device
        ids = torch.tensor([self.r3.tokenize(query)], device=device)  # (1, Q)
        scores: list[float] = []
        for start in range(0, len(self.memories), _SCORE_BATCH):
            memory = torch.stack(self.memories[start : start + _SCORE_BATCH]).to(device, torch.float32)  # (B, m, d)
            target = ids.expand(memory.shape[0], -1)  # (B, Q)
            stats = net.read(memory, target, marker="continue", keep_logits=True)
            token_nll = F.cross_entropy(stats.kept_logits, target.reshape(-1), reduction="none")  # (B * Q,)
            scores += token_nll.view(memory.shape[0], -1).mean(1).tolist()
        return scores

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The top `k` records by mean log-likelihood of the query; ties go to the earlier one."""
        if not self.memories or not self.r3.tokenize(query):
            return []
        scores = self.nll(query)
        ranked = sorted(range(len(scores)), key=lambda i: (scores[i], i))[:k]
        return [(i, -scores[i]) for i in ranked]


def new_store(r3: R3Mem, method: str, ratio: float):
    """A fresh, empty store for one conversation."""
    if method == "r3mem":
        return R3MemStore(r3, ratio)
    if method == "bm25":
        from r3mem.bm25 import BM25Retriever

        return BM25Retriever()
    from r3mem.eval.retrievers.dense import DenseRetriever

    return DenseRetriever()


@dataclass
class Outcome:
    category: int
    f1: float
    context_tokens: int
    recall: float | None = None
    recall_ms: float | None = None


def run_conversation(r3: R3Mem, method: str, records: list[Turn], qs: list[Question], args: argparse.Namespace,
                     add_ms: list[float], bar) -> list[Outcome]:
    """Ingest one conversation into a fresh store for `method`, then answer its questions."""
    store = new_store(r3, method, args.ratio) if method in RETRIEVAL else None
    if store is not None:
        for record in tqdm(records, desc=f"add ({method})", unit="turn", leave=False):
            start = time.perf_counter()
            store.add(record.text)
            add_ms.append((time.perf_counter() - start) * 1000)
    full_text = "\n".join(t.text for t in records) if method == "full_context" else ""
    outcomes = []
    for q in qs:
        outcome = Outcome(q.category, 0.0, 0)
        context = full_text
        if store is not None:
            start = time.perf_counter()
            hits = store.search(q.question, args.top_k)
            outcome.recall_ms = (time.perf_counter() - start) * 1000
            found = [records[i].dia_id for i, _ in hits]
            outcome.recall = recall_at_k(found, q.evidence) if q.evidence else None
            context = "\n".join(records[i].text for i in sorted(i for i, _ in hits))  # in time order
        outcome.context_tokens = min(len(r3.tokenize(context)), READER_WINDOW) if context else 0
        outcome.f1 = squad_f1(reader.answer_from_text(r3, context, q.question), [q.answer])
        outcomes.append(outcome)
        bar.update(1)
    return outcomes


def summarise(method: str, outcomes: list[Outcome], add_ms: list[float]) -> list[dict]:
    """One row per category present, then `all`."""
    categories = sorted({o.category for o in outcomes})
    rows = []
    for category in [*categories, "all"]:
        group = [o for o in outcomes if category in ("all", o.category)]
        recalls = [o.recall for o in group if o.recall is not None]
        recall_ms = [o.recall_ms for o in group if o.recall_ms is not None]
        rows.append({
            "method": method, "category": category,
            "recall_at_k": sum(recalls) / len(recalls) if recalls else None,
            "f1": sum(o.f1 for o in group) / len(group),
            "context_tokens": sum(o.context_tokens for o in group) / len(group),
            "add_ms_p50": percentile(add_ms, 50) if add_ms else None,
            "add_ms_p95": percentile(add_ms, 95) if add_ms else None,
            "recall_ms_p50": percentile(recall_ms, 50) if recall_ms else None,
            "recall_ms_p95": percentile(recall_ms, 95) if recall_ms else None,
            "n": len(group),
        })
    return rows


def run(args: argparse.Namespace, r3: R3Mem) -> EvalResult:
    samples = load_locomo(require_path(args.data), args.conversations)
    methods = parse_methods(args.methods, METHODS)
    work = [(turns(s), questions(s, args.limit)) for s in samples]
    bar = tqdm(total=sum(len(qs) for _, qs in work) * len(methods), desc="locomo", unit="answer")
    rows = []
    for method in methods:
        outcomes: list[Outcome] = []
        add_ms: list[float] = []
        for records, qs in work:
            outcomes += run_conversation(r3, method, records, qs, args, add_ms, bar)
        rows += summarise(method, outcomes, add_ms)
    bar.close()
    extra = {"ratio": args.ratio, "memory_tokens": r3.config.memory_tokens_for(args.ratio), "top_k": args.top_k,
             "conversations": [s.get("sample_id", str(i)) for i, s in enumerate(samples)], "trained": r3.trained}
    return EvalResult("locomo", str(args.data), r3.checkpoint_fingerprint, r3.base.name, rows, extra)


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
