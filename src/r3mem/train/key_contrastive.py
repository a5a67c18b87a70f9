"""Training the retrieval key (`r3mem.retrieval_key`) contrastively.

Each example is a question, the records that answer it, and a pool of records it must beat:
LoCoMo question -> its evidence turns among every turn of that conversation, and SQuAD
question -> the sentence holding its answer among every sentence of that article. The loss is
InfoNCE over the pool (all positives against the rest), so the key learns to separate the
answer from records about the same people and topics, not from random text. Only the head
trains; the LM features are computed once and cached (under runs/, outside git).

    python -m r3mem.train.key_contrastive --out checkpoints/smollm2-135m-r3mem \\
        --conversations conv-26
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from r3mem.retrieval_key import KeyConfig, KeyHead, lm_features

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Example:
    query: str
    positives: list[int]  # indexes into `pool`
    pool: list[str]


def locomo_examples(path: Path, names: set[str]) -> list[Example]:
    """Question -> evidence turns ("speaker: text", as the store keeps them) of the named conversations."""
    out = []
    for sample in json.loads(path.read_text()):
        if sample["sample_id"] not in names:
            continue
        conv = sample["conversation"]
        sessions = sorted((k for k, v in conv.items() if k.startswith("session_") and isinstance(v, list)),
                          key=lambda k: int(k.split("_")[1]))
        turns = [(t["dia_id"], f"{t['speaker']}: {t['text']}") for k in sessions for t in conv[k]]
        where = {dia: i for i, (dia, _) in enumerate(turns)}
        pool = [text for _, text in turns]
        for qa in sample["qa"]:
            positives = sorted({where[e] for e in qa.get("evidence", []) if e in where})
            if positives:
                out.append(Example(qa["question"], positives, pool))
    return out


def squad_examples(path: Path) -> list[Example]:
    """Question -> the sentence of its paragraph that holds the answer, among the article's sentences."""
    out = []
    for article in json.loads(path.read_text())["data"]:
        pool: list[str] = []
        questions: list[tuple[str, int]] = []
        for para in article["paragraphs"]:
            context, cursor, spans = para["context"], 0, []
            for sentence in _SENTENCE.split(context):
                start = context.find(sentence, cursor)
                spans.append((start, start + len(sentence), len(pool)))
                pool.append(sentence)
                cursor = start + len(sentence)
            for qa in para["qas"]:
                at = qa["answers"][0]["answer_start"]
                hit = [i for s, e, i in spans if s <= at < e]
                if hit:
                    questions.append((qa["question"], hit[0]))
        out += [Example(q, [i], pool) for q, i in questions]
    return out


def cached_features(r3, texts: list[str], config: KeyConfig, cache: Path) -> dict[str, torch.Tensor]:
    """text -> LM feature, computing only what `cache` (an .npz plus a .json of its texts) lacks."""
    known: dict[str, torch.Tensor] = {}
    names = cache.with_suffix(".json")
    if cache.is_file() and names.is_file():
        meta = json.loads(names.read_text())
        if meta.get("config") == vars(config):
            array = np.load(cache)["features"]
            known = {t: torch.from_numpy(array[i]) for i, t in enumerate(meta["texts"])}
    missing = sorted(set(texts) - set(known))
    if missing:
        fresh = lm_features(r3.network, r3.tokenizer, missing, config)
        known.update(zip(missing, fresh, strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        order = sorted(known)
        np.savez(cache, features=torch.stack([known[t] for t in order]).numpy())
        names.write_text(json.dumps({"config": vars(config), "texts": order}))
    return known


def train_head(examples: list[Example], features: dict[str, torch.Tensor], config: KeyConfig, steps: int = 600,
               batch: int = 32, lr: float = 1e-3, temperature: float = 0.05, seed: int = 0) -> KeyHead:
    torch.manual_seed(seed)
    texts = sorted({e.query for e in examples} | {t for e in examples for t in e.pool})
    matrix = torch.nan_to_num(torch.stack([features[t] for t in texts]).float())
    row = {t: i for i, t in enumerate(texts)}
    head = KeyHead(matrix.shape[1], config)
    head.mean.copy_(matrix.mean(0))  # standardised on the training texts only
    head.std.copy_(matrix.std(0) + 1e-4)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        loss = torch.zeros(())
        for k in rng.choice(len(examples), batch):
            ex = examples[int(k)]
            query = head(matrix[row[ex.query]][None], "query")  # (1, dim)
            pool = head(matrix[[row[t] for t in ex.pool]], "record")  # (P, dim)
            scores = (query @ pool.T)[0] / temperature
            loss = loss - (scores.log_softmax(-1)[ex.positives].logsumexp(-1))
        (loss / batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    return head.eval()


def main(argv: list[str] | None = None) -> None:
    from r3mem.api import R3Mem

    parser = argparse.ArgumentParser(prog="python -m r3mem.train.key_contrastive", description=__doc__)
    parser.add_argument("--out", required=True, help="checkpoint directory the head is written into")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--conversations", default="conv-26", help="LoCoMo conversations to train on")
    parser.add_argument("--no-squad", action="store_true")
    parser.add_argument("--cache", default="runs/key/features.npz")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = Path(args.data)
    examples = locomo_examples(data / "locomo" / "locomo_dev.json", set(args.conversations.split(",")))
    if not args.no_squad:
        examples += squad_examples(data / "qa" / "squad_v1.1_dev_part_a.json")
    config = KeyConfig()
    r3 = R3Mem.load()
    texts = sorted({e.query for e in examples} | {t for e in examples for t in e.pool})
    head = train_head(examples, cached_features(r3, texts, config, Path(args.cache)), config, steps=args.steps)
    head.save(args.out)
    print(json.dumps({"examples": len(examples), "texts": len(texts), "out": args.out,
                      "conversations": args.conversations, "squad": not args.no_squad}))


if __name__ == "__main__":
    main()
