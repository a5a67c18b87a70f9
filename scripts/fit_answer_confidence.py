"""Fit the grounded answer's confidence (`r3mem.answers.confidence`) on LoCoMo dev conversations.

Reads the stores `r3mem eval locomo --stores DIR` filled. For every `--every`-th question of the
`--fit` conversations it recalls the top `--top-k` turns as `r3mem eval locomo` does, and records
every candidate answer the grounded answerer locates in a source (`r3mem.answers.grounded.located`),
with its features and the F1 of the answer it gives (dated, for a "when" question), and the F1 of
the free reader's answer over the same turns (the `r3mem_free` column). Positive
examples are candidates for categories 1-4 that score F1 > 0.3; negative ones are candidates for
category 5 (adversarial). A logistic regression (Newton's method, a little L2, standardised
features) separates them. The threshold is then chosen the way answers are given, the most confident
candidate of each question: the one that maximises F1 over categories 1-4 among the thresholds that
abstain on at least `--cat5` of category 5 (a margin over the floor's half, so held-out questions
keep it; a question with no located candidate abstains whatever the threshold) and that abstain on
the README's hand-checked unanswerable question (`UNANSWERABLE`, asked through a fresh store as
`r3mem ask` asks it). Writes the calibration JSON.

Before fitting on every `--fit` conversation it cross-validates by conversation: fitted (weights and
threshold) on all but one, it answers the one left out, and prints per fold and pooled the grounded
F1 over categories 1-4 beside the free reader's on the same questions (paired difference with its
95 % interval) and the share of category 5 abstained on. These are the figures for conversations
the calibration was not fitted on; `r3mem eval locomo --only ID --calibration FOLD.json` repeats a
fold through the product's path (`--folds-out` writes each fold's calibration).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_answer_confidence.py --stores /tmp/stores \\
        --every 2 --cache /tmp/answer-candidates.json --out src/r3mem/answers/calibration.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from r3mem.answers import evidence_of
from r3mem.answers.confidence import FEATURES, Calibration
from r3mem.answers.grounded import dated, generate, located
from r3mem.api import R3Mem
from r3mem.eval.locomo import load_locomo, questions, recall_outcome
from r3mem.eval.metrics import paired_interval, squad_f1
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
# (what one user stored, what they ask): nothing stored answers it, and the README shows the abstention.
UNANSWERABLE = [(["My cat is called Luna."], "What is my dog called?")]
STEP = 0.01  # threshold grid
ASK_TOP_K = 3  # records `MemoryStore.ask` reads by default
MARGIN = 0.01  # the threshold clears the hand-checked questions' confidence by this much at least


def collect(args: argparse.Namespace) -> list[dict]:
    r3 = R3Mem.load(device="cpu")
    wanted = args.fit.split(",")
    rows = []
    for sample in load_locomo(Path(args.data), None):
        if sample["sample_id"] not in wanted:
            continue
        store = MemoryStore(open_backend(f"sqlite:///{Path(args.stores) / (sample['sample_id'] + '.sqlite3')}"), r3)
        for n, q in enumerate(questions(sample, None, args.every)):
            _, hits = recall_outcome(store, "r3mem", q, args.top_k)  # in time order, as the eval reads them
            evidence = evidence_of(hits)
            found = located(r3, q.question, evidence) if evidence else []
            given = [dated(c, q.question, evidence) for c in found]  # the answer as `answer_question` gives it
            free = generate(r3, [e.text for e in evidence], q.question) if evidence else ""
            rows.append({"conversation": sample["sample_id"], "category": q.category, "question": q.question,
                         "gold": q.answer, "texts": [e.text for e in evidence], "free_f1": squad_f1(free, [q.answer]),
                         "candidates": [{"answer": g.answer, "span_text": c.answer, "features": c.features,
                                         "read": c.candidate, "source": c.sources[0].text,
                                         "f1": squad_f1(g.answer or "", [q.answer])}
                                        for c, g in zip(found, given, strict=True)]})
            print(n, q.category, repr(q.question), [(c["answer"], round(c["f1"], 2)) for c in rows[-1]["candidates"]],
                  flush=True)
        store.close()
    return rows


def unanswerable_candidates(r3: R3Mem) -> list[list[dict]]:
    """The features of every candidate `ask` locates for each `UNANSWERABLE` question, each asked of
    a fresh store holding only its records."""
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for n, (records, question) in enumerate(UNANSWERABLE):
            store = MemoryStore(open_backend(f"sqlite:///{Path(folder) / f'{n}.sqlite3'}"), r3)
            user = Namespace(user=f"u{n}")
            for text in records:
                store.add(user, text=text)
            evidence = evidence_of(store.recall(question, user, top_k=ASK_TOP_K))
            out.append([c.features for c in located(r3, question, evidence)])
            store.close()
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Weights then bias, by Newton's method."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) + l2 * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def choose_threshold(rows: list[dict], confidence, cat5_floor: float, above: float) -> float:
    """The threshold maximising F1 over categories 1-4 when each question answers its most
    confident candidate, among those abstaining on at least `cat5_floor` of category 5 and
    lying above `above` (the hand-checked unanswerable questions' best confidence)."""
    best, best_f1 = 1.0, -1.0
    answerable = [r for r in rows if r["category"] != 5]
    adversarial = [r for r in rows if r["category"] == 5]

    def top(row: dict) -> tuple[float, float]:  # (confidence, F1) of the answer given, (-1, 0) if none
        scored = [(confidence(c["features"]), c["f1"]) for c in row["candidates"]]
        return max(scored, key=lambda s: s[0]) if scored else (-1.0, 0.0)

    tops_answerable, tops_adversarial = [top(r) for r in answerable], [top(r) for r in adversarial]
    print("threshold  f1(1-4)  abstained(1-4)  abstained(cat5)")
    for t in np.round(np.arange(0.0, 0.96, STEP), 2):
        f1 = sum(f for c, f in tops_answerable if c >= t) / len(answerable)
        wrong = sum(c < t for c, _ in tops_answerable) / len(answerable)
        abstained = sum(c < t for c, _ in tops_adversarial) / len(adversarial)
        if round(t * 100) % 5 == 0:
            print(f"{t:9.2f}  {f1:7.4f}  {wrong:14.3f}  {abstained:15.3f}")
        if abstained >= cat5_floor and t >= above + MARGIN and f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def fit(rows: list[dict], cat5_floor: float, unanswerable: list[list[dict]]) -> Calibration:
    candidates = [(r["category"], c) for r in rows for c in r["candidates"]]
    examples = [(category != 5, c) for category, c in candidates if category == 5 or c["f1"] > 0.3]
    x = np.array([[c["features"][f] for f in FEATURES] for _, c in examples])
    y = np.array([positive for positive, _ in examples], np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    w = fit_logistic((x - mean) / scale, y)
    print(f"{len(rows)} questions, {len(candidates)} located candidates; {int(y.sum())} positive, "
          f"{int(len(y) - y.sum())} negative (category 5)")
    print("weights:", dict(zip(FEATURES, np.round(w[:-1], 3).tolist(), strict=True)), "bias", round(w[-1], 3))

    def confidence(values: dict) -> float:
        z = ((np.array([values[f] for f in FEATURES]) - mean) / scale) @ w[:-1] + w[-1]
        return float(1 / (1 + np.exp(-z)))

    above = max((confidence(c) for candidates in unanswerable for c in candidates), default=0.0)
    print(f"hand-checked unanswerable questions: best candidate confidence {above:.3f}")
    threshold = choose_threshold(rows, confidence, cat5_floor, above)
    print("threshold", threshold)
    return Calibration(FEATURES, tuple(mean.round(6).tolist()), tuple(scale.round(6).tolist()),
                       tuple(w[:-1].round(6).tolist()), round(float(w[-1]), 6), threshold)


def answered(rows: list[dict], calibration: Calibration) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(grounded F1, free F1) per question of categories 1-4, and per category-5 question whether it
    is abstained on, each question answered by its most confident candidate as `answer_question` does."""
    grounded, free, abstained = [], [], []
    for row in rows:
        scored = [(calibration.confidence(c["features"]), c["f1"]) for c in row["candidates"]]
        confidence, f1 = max(scored, key=lambda s: s[0]) if scored else (-1.0, 0.0)
        answers = confidence >= calibration.threshold
        if row["category"] == 5:
            abstained.append(not answers)
        else:
            grounded.append(f1 if answers else 0.0)
            free.append(row["free_f1"])
    return np.array(grounded), np.array(free), abstained


def cross_validate(rows: list[dict], cat5_floor: float, unanswerable: list[list[dict]],
                   folds_out: str | None) -> None:
    """Leave one conversation out: fit on the others, answer it; print per fold and pooled."""
    pooled_grounded, pooled_free, pooled_abstained = [], [], []
    print("left out      threshold  F1 grounded  F1 free  category 5 abstained")
    for held in sorted({r["conversation"] for r in rows}):
        with contextlib.redirect_stdout(io.StringIO()):
            calibration = fit([r for r in rows if r["conversation"] != held], cat5_floor, unanswerable)
        grounded, free, abstained = answered([r for r in rows if r["conversation"] == held], calibration)
        print(f"{held:12s}  {calibration.threshold:9.2f}  {grounded.mean():11.3f}  {free.mean():7.3f}  "
              f"{sum(abstained)}/{len(abstained)}")
        pooled_grounded += grounded.tolist()
        pooled_free += free.tolist()
        pooled_abstained += abstained
        if folds_out:
            Path(folds_out).mkdir(parents=True, exist_ok=True)
            data = {**calibration.as_dict(), "fitted_on": "all but " + held, "cat5_floor": cat5_floor}
            (Path(folds_out) / f"without-{held}.json").write_text(json.dumps(data, indent=1) + "\n")
    diff, low, high = paired_interval([g - f for g, f in zip(pooled_grounded, pooled_free, strict=True)])
    print(f"pooled: F1 grounded {np.mean(pooled_grounded):.3f}, free {np.mean(pooled_free):.3f}, paired "
          f"{diff:+.3f} ({low:+.3f}, {high:+.3f}) over {len(pooled_free)} questions; category 5 abstained "
          f"{sum(pooled_abstained)}/{len(pooled_abstained)} = {np.mean(pooled_abstained):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", required=True)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--fit", default="conv-26,conv-30,conv-41,conv-42,conv-43")
    parser.add_argument("--every", type=int, default=1, help="use every N-th question (categories come in blocks)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--cat5", type=float, default=0.6,
                        help="least share of category 5 the threshold must abstain on (the floor is 0.5)")
    parser.add_argument("--cache", help="feature rows: read if present, else collected and written here")
    parser.add_argument("--out", help="write the calibration JSON here")
    parser.add_argument("--folds-out", help="write each cross-validation fold's calibration into this folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cache and Path(args.cache).exists():
        rows = json.loads(Path(args.cache).read_text())
    else:
        rows = collect(args)
        if args.cache:
            Path(args.cache).write_text(json.dumps(rows, indent=1))
    unanswerable = unanswerable_candidates(R3Mem.load(device="cpu"))
    if len({r["conversation"] for r in rows}) > 1:
        cross_validate(rows, args.cat5, unanswerable, args.folds_out)
    calibration = fit(rows, args.cat5, unanswerable)
    if args.out:
        command = "OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_answer_confidence.py " + " ".join(sys.argv[1:])
        data = {**calibration.as_dict(), "fitted_on": args.fit, "every": args.every, "top_k": args.top_k,
                "cat5_floor": args.cat5,
                "examples": len(rows), "command": command}
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
