"""Fit the fused recall's weights (`r3mem.store.fusion.Fusion`) on LoCoMo dev conversations.

Reads the stores `r3mem eval locomo --stores DIR` filled (one SQLite file per conversation, each
turn a record with its dia_id in metadata). For every question with evidence it takes the
candidates fused recall scores (both lists' top `depth` and their neighbours), labels each by
whether it is an evidence turn, and fits a logistic regression (Newton's method, a little L2) on
`Fusion.features`; with --key also on the memory key's cosine, to see whether the untrained key
adds anything. It prints the weights, then recall@5 and @10 of fused, bm25, dense and bm25_dense on
the fitting conversations and on the others, and how each `--thresholds` splits the fused top-1
hits into kept or dropped, right (an evidence turn) or wrong.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_fusion.py --stores /tmp/stores \\
        --fit conv-26,conv-30 --report conv-41,conv-42,conv-43
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from r3mem.eval.locomo import NAMESPACE, load_locomo, questions
from r3mem.eval.metrics import recall_at_k
from r3mem.store import MemoryStore
from r3mem.store.dense import top
from r3mem.store.fusion import Fusion, candidates, fuse, rrf
from r3mem.store.location import open_backend

NAMES = ["cosine", "lexical", "dense", "neighbour_cosine", "neighbour_lexical", "key"]


def question_data(store: MemoryStore, fusion: Fusion, question: str, evidence: list[str], dia: dict,
                  with_key: bool) -> dict:
    ids, cosines = store.dense.similarities(question, NAMESPACE, None, None)
    keys = store._key_similarities(question, NAMESPACE, None, None) if with_key else None
    return {"ids": ids, "cosines": cosines, "dense": top(ids, cosines, fusion.depth), "keys": keys,
            "lexical": store.backend.lexical(question, NAMESPACE, None, None, fusion.depth),
            "evidence": set(evidence), "dia": [dia[i] for i in ids]}


def design(fusion: Fusion, q: dict, columns: int) -> tuple[np.ndarray, np.ndarray]:
    position = {i: n for n, i in enumerate(q["ids"])}
    lexical = fusion.rank_features(q["lexical"], position, len(q["ids"]))
    dense = fusion.rank_features(q["dense"], position, len(q["ids"]))
    keys = None if q["keys"] is None else np.array([q["keys"].get(i, 0.0) for i in q["ids"]], np.float32)
    pool = candidates(lexical, dense)
    x = fusion.features(q["cosines"], lexical, dense, keys)[pool][:, :columns]
    return x, np.array([q["dia"][k] in q["evidence"] for k in pool], np.float64)


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    """Logistic regression by Newton's method; returns the weights, then the bias."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-xb @ w))
        hessian = xb.T @ (xb * (p * (1 - p))[:, None]) + l2 * np.eye(len(w))
        w -= np.linalg.solve(hessian, xb.T @ (p - y) + l2 * w)
    return w


def evaluate(qs: list[dict], fusion: Fusion, thresholds: list[float]) -> dict:
    """recall@5 and @10 per method, and the top-1 split at each threshold."""
    out: dict = {m: {5: [], 10: []} for m in ("fused", "bm25", "dense", "bm25_dense")}
    splits = {t: {"kept_right": 0, "kept_wrong": 0, "dropped_right": 0, "dropped_wrong": 0} for t in thresholds}
    for q in qs:
        position = {i: n for n, i in enumerate(q["ids"])}
        fused = fuse(fusion, q["ids"], q["cosines"], q["lexical"], q["dense"], q["keys"])
        ranked = {"fused": fused, "bm25": q["lexical"], "dense": q["dense"],
                  "bm25_dense": rrf([i for i, _ in q["lexical"]], [i for i, _ in q["dense"]])}
        for method, ranking in ranked.items():
            dia = [q["dia"][position[i]] for i, _ in ranking[:10]]
            for k in (5, 10):
                out[method][k].append(recall_at_k(dia, q["evidence"], k))
        if fused:
            right = q["dia"][position[fused[0][0]]] in q["evidence"]
            for t, split in splits.items():
                split[("kept_" if fused[0][1] >= t else "dropped_") + ("right" if right else "wrong")] += 1
    summary = {m: {k: round(float(np.mean(v)), 4) for k, v in d.items()} for m, d in out.items()}
    return summary | {"questions": len(qs), "top1": splits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", required=True)
    parser.add_argument("--data", default="../shared/data/locomo/locomo_dev.json")
    parser.add_argument("--fit", default="conv-26,conv-30")
    parser.add_argument("--report", default="")
    parser.add_argument("--key", action="store_true", help="also fit a weight for the memory key's cosine")
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.5")
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = {s["sample_id"]: s for s in load_locomo(Path(args.data), None)}
    model = None
    if args.key:
        from r3mem.api import R3Mem

        model = R3Mem.load(device="cpu")
    fusion = Fusion()

    def load(names: str) -> list[dict]:
        out = []
        for name in [n for n in names.split(",") if n]:
            store = MemoryStore(open_backend(f"sqlite:///{Path(args.stores) / (name + '.sqlite3')}"), model)
            dia = {r.id: r.metadata["dia_id"] for r in store.list(NAMESPACE, limit=100_000)}
            out += [question_data(store, fusion, q.question, q.evidence, dia, args.key)
                    for q in questions(samples[name], None) if q.evidence]
        return out

    columns = len(NAMES) if args.key else len(NAMES) - 1
    fitting = load(args.fit)
    reporting = load(args.report) if args.report else []
    parts = [design(fusion, q, columns) for q in fitting]
    x, y = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    thresholds = [float(t) for t in args.thresholds.split(",")]
    # the ablation: each feature set fitted on its own; the last one is the full model
    sets = [NAMES[:1], NAMES[1:3], NAMES[:3], NAMES[:5]] + ([NAMES] if args.key else [])
    for names in sets:
        keep = [NAMES.index(n) for n in names]
        w = fit(x[:, keep], y)
        weights = {n: 0.0 for n in NAMES} | {n: round(float(v), 3) for n, v in zip(names, w[:-1], strict=True)}
        weights["bias"] = round(float(w[-1]), 3)
        fitted = dataclasses.replace(fusion, **weights)
        print(json.dumps({"features": names, "fit_on": args.fit, "candidates": len(y), "positives": int(y.sum()),
                          "weights": weights}))
        print("fit", json.dumps(evaluate(fitting, fitted, thresholds)))
        if reporting:
            print("report", json.dumps(evaluate(reporting, fitted, thresholds)))


if __name__ == "__main__":
    main()
