"""Fit the grounded answer's confidence (`r3mem.answers.confidence`) on LoCoMo dev conversations.

Reads the stores `r3mem eval locomo --stores DIR` filled. For every `--every`-th question of the
`--fit` conversations it recalls the top `--top-k` turns (the store's default method), lets the
grounded answerer extract and ground an answer without abstaining, and records its features.
Answerable examples are categories 1-4 whose answer scores F1 > 0.3; unanswerable ones are
category 5 (adversarial). A logistic regression (Newton's method, a little L2, standardised
features) separates them; the threshold is the one that maximises (answerable answered) +
(category 5 abstained) - 1 on the fitting questions among those that abstain on at least half of
category 5 (ungrounded answers abstain whatever the threshold). Writes the calibration JSON.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_answer_confidence.py --stores /tmp/stores \\
        --fit conv-26,conv-30 --every 2 --cache /tmp/answer-features.json \\
        --out src/r3mem/answers/calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from r3mem.answers import Evidence, answer_question
from r3mem.answers.confidence import FEATURES, Calibration
from r3mem.api import R3Mem
from r3mem.eval.locomo import NAMESPACE, load_locomo, questions
from r3mem.eval.metrics import squad_f1
from r3mem.store import MemoryStore
from r3mem.store.location import open_backend

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
NEVER_ABSTAIN = Calibration(FEATURES, (0.0,) * 5, (1.0,) * 5, (0.0,) * 5, 0.0, 0.0)


def collect(args: argparse.Namespace) -> list[dict]:
    r3 = R3Mem.load(device="cpu")
    wanted = args.fit.split(",")
    rows = []
    for sample in load_locomo(Path(args.data), None):
        if sample["sample_id"] not in wanted:
            continue
        store = MemoryStore(open_backend(f"sqlite:///{Path(args.stores) / (sample['sample_id'] + '.sqlite3')}"), r3)
        for n, q in enumerate(questions(sample, None)[:: args.every]):
            hits = store.recall(q.question, NAMESPACE, top_k=args.top_k)
            evidence = [Evidence(h.record.id, h.text, h.score) for h in sorted(hits, key=lambda h: h.record.created_at)]
            got = answer_question(r3, q.question, evidence, NEVER_ABSTAIN)
            rows.append({"conversation": sample["sample_id"], "category": q.category, "question": q.question,
                         "gold": q.answer, "answer": got.answer, "features": got.features,
                         "f1": squad_f1(got.answer or "", [q.answer])})
            print(n, q.category, repr(q.question), repr(got.answer), round(rows[-1]["f1"], 2), flush=True)
        store.close()
    return rows


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


def choose_threshold(conf: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                     n_pos: int, n_neg: int) -> float:
    """`conf` covers the grounded questions; `n_pos`/`n_neg` count all (ungrounded ones abstain anyway)."""
    best, best_j = 0.5, -1.0
    print("threshold  answered(answerable)  abstained(cat5)")
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        answered = float(((conf >= t) & positive).sum()) / n_pos
        abstained = 1 - float(((conf >= t) & negative).sum()) / n_neg
        print(f"{t:9.2f}  {answered:20.3f}  {abstained:15.3f}")
        if abstained >= 0.5 and answered + abstained - 1 > best_j:
            best, best_j = float(t), answered + abstained - 1
    return best


def fit(rows: list[dict]) -> Calibration:
    positive_all = [r for r in rows if r["category"] != 5 and r["f1"] > 0.3]
    negative_all = [r for r in rows if r["category"] == 5]
    grounded = [r for r in positive_all + negative_all if r["answer"] is not None]
    x = np.array([[r["features"][f] for f in FEATURES] for r in grounded])
    y = np.array([r["category"] != 5 for r in grounded], np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    w = fit_logistic((x - mean) / scale, y)
    print(f"{len(positive_all)} answerable, {len(negative_all)} category 5; {len(grounded)} grounded")
    print("weights:", dict(zip(FEATURES, np.round(w[:-1], 3).tolist(), strict=True)), "bias", round(w[-1], 3))
    conf = 1 / (1 + np.exp(-(((x - mean) / scale) @ w[:-1] + w[-1])))
    threshold = choose_threshold(conf, y == 1, y == 0, len(positive_all), len(negative_all))
    print("threshold", threshold)
    return Calibration(FEATURES, tuple(mean.round(6).tolist()), tuple(scale.round(6).tolist()),
                       tuple(w[:-1].round(6).tolist()), round(float(w[-1]), 6), threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", required=True)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--fit", default="conv-26,conv-30")
    parser.add_argument("--every", type=int, default=1, help="use every N-th question (categories come in blocks)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--cache", help="feature rows: read if present, else collected and written here")
    parser.add_argument("--out", help="write the calibration JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.cache and Path(args.cache).exists():
        rows = json.loads(Path(args.cache).read_text())
    else:
        rows = collect(args)
        if args.cache:
            Path(args.cache).write_text(json.dumps(rows, indent=1))
    calibration = fit(rows)
    if args.out:
        command = "OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_answer_confidence.py " + " ".join(sys.argv[1:])
        data = {**calibration.as_dict(), "fitted_on": args.fit, "every": args.every, "top_k": args.top_k,
                "examples": len(rows), "command": command}
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
