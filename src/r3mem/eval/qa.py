"""`r3mem eval qa`: SQuAD v1.1 questions answered from six kinds of context, one reader.

Every method asks the same reader (eval/reader.py), so differences come from the context:

- `no_context`: the question alone (what the model knows by itself).
- `raw_context`: the gold paragraph as text (the ceiling).
- `memory`: the paragraph's memory snapshots, flattened, read by the expand adapter.
- `expanded`: the text r3mem regenerates from that memory.
- `bm25_rag`, `dense_rag`: the whole article is the long context, cut into ~128-token
  chunks of whole sentences; the top-k chunks for the question are the context.
- `r3mem`, `r3mem_free`: the article stored in a memory store, answered as `MemoryStore.ask`
  answers (grounded, or abstaining) and by the free reader over the same recall; each is also
  asked of another article, which cannot answer it (`eval/qa_answers.py`). Their rows add
  `abstained` (answerable questions wrongly abstained on) and `unanswerable_abstained`.

Building a memory, an expansion or an index is ingestion: done once per paragraph or
article and not timed. `latency_ms` is the query-time cost (retrieval + reading), except
for `expanded`, which also pays its paragraph's expansion (expansion happens on demand).
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from r3mem import reader
from r3mem.api import R3Mem
from r3mem.decode.options import DEFAULT_BEAMS, DEFAULT_DECODING, Decoding
from r3mem.errors import InvalidInput
from r3mem.eval.common import EvalResult, add_common_arguments, require_path
from r3mem.eval.metrics import percentile, squad_exact_match, squad_f1
from r3mem.eval.qa_answers import ANSWER_METHODS, ArticleMemory
from r3mem.hierarchy import split_sentences
from r3mem.memory_file import Memory

METHODS = ("no_context", "raw_context", "memory", "expanded", "bm25_rag", "dense_rag", *ANSWER_METHODS)
CHUNK_TOKENS = 128
# The reader keeps at most this many context tokens (it truncates from the left).
READER_WINDOW = inspect.signature(reader.answer_from_text).parameters["max_context_tokens"].default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, "qa/squad_v1.1_dev_part_a.json")
    parser.set_defaults(limit=50)
    parser.add_argument("--ratio", type=float, default=4, help="compression ratio of the paragraph memories")
    parser.add_argument("--top-k", type=int, default=2, help="chunks retrieved by the RAG methods")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th question before --limit (the "
                        "file lists hundreds of questions per article; a sample across articles needs N > 1)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--beams", type=int, default=DEFAULT_BEAMS,
                        help=f"beam-search width of the `expanded` method's expansion; 1 is greedy "
                             f"(default {DEFAULT_BEAMS})")


def parse_methods(spec: str, known: tuple[str, ...]) -> list[str]:
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        raise InvalidInput(f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}")
    return chosen


@dataclass
class Question:
    article: int
    paragraph: int
    question: str
    answers: list[str]


def load_squad(path: Path, limit: int | None, every: int = 1) -> tuple[list[list[str]], list[Question]]:
    """Paragraph texts per article, and the first `limit` of every `every`-th question in file order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
        articles = [[p["context"] for p in a["paragraphs"]] for a in data]
        questions = [Question(ai, pi, qa["question"], [a["text"] for a in qa["answers"]])
                     for ai, a in enumerate(data) for pi, p in enumerate(a["paragraphs"]) for qa in p["qas"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is not SQuAD v1.1 JSON: {exc}") from exc
    questions = [q for q in questions if q.answers][::every][:limit]
    if not questions:
        raise InvalidInput(f"{path} holds no answerable questions")
    return articles, questions


def chunk_text(r3: R3Mem, text: str, max_tokens: int = CHUNK_TOKENS) -> list[str]:
    """Whole sentences packed greedily into chunks of at most `max_tokens` tokens
    (a longer sentence is a chunk of its own), so no chunk cuts a sentence in two."""
    chunks: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for start, end in split_sentences(text):
        n = len(r3.tokenize(text[start:end]))
        if chunks and chunks[-1][2] + n <= max_tokens:
            chunks[-1] = (chunks[-1][0], end, chunks[-1][2] + n)
        else:
            chunks.append((start, end, n))
    return [text[s:e] for s, e, _ in chunks]


class Ingested:
    """Per-paragraph memories and expansions, per-article chunk indexes: built once each."""

    def __init__(self, r3: R3Mem, articles: list[list[str]], ratio: float,
                 decoding: Decoding = DEFAULT_DECODING) -> None:
        self.r3, self.articles, self.ratio, self.decoding = r3, articles, ratio, decoding
        self._memories: dict[tuple[int, int], Memory] = {}
        self._expansions: dict[tuple[int, int], tuple[str, float]] = {}
        self._indexes: dict[tuple[str, int], tuple[list[str], object]] = {}

    def paragraph(self, q: Question) -> str:
        return self.articles[q.article][q.paragraph]

    def memory(self, q: Question) -> Memory:
        key = (q.article, q.paragraph)
        if key not in self._memories:
            self._memories[key] = self.r3.compress(self.paragraph(q), ratio=self.ratio)
        return self._memories[key]

    def expansion(self, q: Question) -> tuple[str, float]:
        """The regenerated paragraph and the milliseconds its expansion took."""
        key = (q.article, q.paragraph)
        if key not in self._expansions:
            memory = self.memory(q)
            start = time.perf_counter()
            text = self.r3.expand(memory, decoding=self.decoding)
            self._expansions[key] = (text, (time.perf_counter() - start) * 1000)
        return self._expansions[key]

    def index(self, kind: str, q: Question):
        """(chunks, retriever) over the question's whole article."""
        key = (kind, q.article)
        if key not in self._indexes:
            from r3mem.bm25 import BM25Retriever
            from r3mem.eval.retrievers.dense import DenseRetriever

            chunks = chunk_text(self.r3, "\n\n".join(self.articles[q.article]))
            retriever = BM25Retriever(chunks) if kind == "bm25" else DenseRetriever(chunks)
            self._indexes[key] = (chunks, retriever)
        return self._indexes[key]


def prepare(store: Ingested, method: str, q: Question) -> None:
    """Ingestion for `method` (untimed): memories, expansions and indexes."""
    if method in ("memory", "expanded"):
        store.memory(q)
    if method == "expanded":
        store.expansion(q)
    if method.endswith("_rag"):
        store.index(method.removesuffix("_rag"), q)


def ask(store: Ingested, method: str, q: Question, top_k: int) -> tuple[str, int, float]:
    """Answer `q` with `method`: (answer, context tokens, extra query-time ms)."""
    r3 = store.r3
    if method == "memory":
        snapshots = store.memory(q).snapshots  # (S, m, d)
        flat = snapshots.reshape(-1, snapshots.shape[-1])
        return reader.answer_from_memory(r3, flat, q.question), flat.shape[0], 0.0
    extra_ms = 0.0
    if method == "no_context":
        context = ""
    elif method == "raw_context":
        context = store.paragraph(q)
    elif method == "expanded":
        context, extra_ms = store.expansion(q)
    else:
        chunks, retriever = store.index(method.removesuffix("_rag"), q)
        hits = sorted(i for i, _ in retriever.search(q.question, top_k))  # article order reads best
        context = "\n\n".join(chunks[i] for i in hits)
    tokens = min(len(r3.tokenize(context)), READER_WINDOW) if context else 0
    return reader.answer_from_text(r3, context, q.question), tokens, extra_ms


def pinned_flags(args: argparse.Namespace) -> dict[str, str]:
    """The expansion width `expanded` decodes at, for the recorded command (`eval.common.spell_out`)."""
    return {"--beams": str(_decoding(args).beams)}


def _decoding(args: argparse.Namespace) -> Decoding:
    """`--beams`, else the library's default; the other options stay at theirs."""
    return Decoding(beams=getattr(args, "beams", DEFAULT_BEAMS))


def run(args: argparse.Namespace, r3: R3Mem) -> EvalResult:
    if args.every < 1:
        raise InvalidInput("--every must be at least 1")
    articles, questions = load_squad(require_path(args.data), args.limit, args.every)
    methods = parse_methods(args.methods, METHODS)
    decoding = _decoding(args)
    store = Ingested(r3, articles, args.ratio, decoding)
    log: dict[str, list[tuple[float, float, int, float]]] = {m: [] for m in methods}
    bar = tqdm(total=len(questions) * len(methods), desc="qa", unit="answer")
    for q in questions:
        for method in (m for m in methods if m not in ANSWER_METHODS):
            prepare(store, method, q)
            start = time.perf_counter()
            answer, tokens, extra_ms = ask(store, method, q, args.top_k)
            ms = (time.perf_counter() - start) * 1000 + extra_ms
            log[method].append((squad_exact_match(answer, q.answers), squad_f1(answer, q.answers), tokens, ms))
            bar.update(1)
    rows = [{"method": m, "em": _mean(e[0] for e in log[m]), "f1": _mean(e[1] for e in log[m]),
             "context_tokens": _mean(e[2] for e in log[m]),
             "latency_ms_p50": percentile([e[3] for e in log[m]], 50), "n": len(log[m])}
            for m in methods if m not in ANSWER_METHODS]
    rows += answer_rows(r3, articles, questions, [m for m in methods if m in ANSWER_METHODS], bar)
    bar.close()
    extra = {"every": args.every, "ratio": args.ratio, "memory_tokens": r3.config.memory_tokens_for(args.ratio),
             "top_k": args.top_k, "beams": decoding.beams, "chunk_tokens": CHUNK_TOKENS, "trained": r3.trained}
    return EvalResult("qa", str(args.data), r3.checkpoint_fingerprint, r3.base.name, rows, extra)


def answer_rows(r3: R3Mem, articles: list[list[str]], questions: list[Question], methods: list[str],
                bar) -> list[dict]:
    """The `r3mem` and `r3mem_free` rows: each question asked of its article and of another one."""
    if not methods:
        return []
    rows = []
    with tempfile.TemporaryDirectory(prefix="r3mem-qa-") as folder:
        memory = ArticleMemory(r3, articles, Path(folder))
        for method in methods:
            answered, variants, ms = [], [], []
            for q in questions:
                start = time.perf_counter()
                answered.append(memory.answer(method, q.question, q.answers, q.article))
                ms.append((time.perf_counter() - start) * 1000)
                variants.append(memory.answer(method, q.question, q.answers, memory.other(q.article)))
                bar.update(1)
            rows.append({"method": method, "em": _mean(s.exact_match for s in answered),
                         "f1": _mean(s.f1 for s in answered), "context_tokens": None,
                         "latency_ms_p50": percentile(ms, 50), "n": len(answered),
                         "abstained": _mean(s.abstained for s in answered),
                         "unanswerable_abstained": _mean(s.abstained for s in variants)})
        memory.close()
    return rows


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def plot(result: EvalResult, path: Path) -> None:
    """EM and F1 per method (bars), context tokens on the labels."""
    import matplotlib.pyplot as plt

    rows = result.rows
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([i - 0.2 for i in x], [r["em"] for r in rows], width=0.4, label="EM")
    ax.bar([i + 0.2 for i in x], [r["f1"] for r in rows], width=0.4, label="F1")
    ax.set_xticks(list(x), [f"{r['method']}\n{r['context_tokens'] or 0:.0f} tok" for r in rows], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="score", title=f"SQuAD QA ({result.model}, ratio {result.extra.get('ratio')})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
