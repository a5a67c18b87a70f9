"""Probe beside the shipped decoder (`r3mem.cycle_decoding`, `--samples N`): its pick against the best one.

R3Mem's cycle loss asks mem(expand(mem(x))) ~= mem(x). At decoding time the same test can choose
among candidate expansions: the source itself re-compresses to exactly the stored memory, and the
memory pools token embeddings chunk by chunk, so a candidate shifted by a skipped word lands
further away. This script draws candidates (beam search's, and optionally samples), then reports
position-wise and aligned token accuracy of: the top beam (the default decoding), the candidate
nearest in memory (what `--samples` ships), and the best candidate in hindsight (the oracle), at ratio 4.

    .venv/bin/python scripts/probe_memory_rerank.py --windows 16 --beams 4 --samples 8 --text train

`--text train` draws windows from training books, so settings chosen here never see held-out text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from r3mem.api import R3Mem
from r3mem.cycle_decoding import choose, draw
from r3mem.eval.metrics import aligned_token_accuracy, token_accuracy
from r3mem.train.config import TrainConfig
from r3mem.train.data import TokenCorpus, load_texts, step_rng

SEG, RATIO = 128, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--text", choices=("train", "val"), default="train")
    parser.add_argument("--config", default="configs/smollm2-135m-rec-lm-128-c5.toml")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    r3 = R3Mem.load()
    net = r3.network.eval()
    cfg = TrainConfig.from_toml(args.config)
    train_texts, val_texts = load_texts(Path(cfg.data_dir), cfg.val_books)
    corpus = TokenCorpus.build(train_texts[:40] if args.text == "train" else val_texts, r3.tokenize)
    windows = torch.as_tensor(corpus.windows(step_rng(cfg.seed, -1 % (2**31), 99), args.windows, 2 * SEG))[:, :SEG]
    memory = net.write(net.initial(args.windows, SEG // RATIO), windows)
    began = time.time()
    pool = draw(net, memory, SEG, args.beams, args.samples)
    print(f"{pool.shape[1]} candidates per window in {time.time() - began:.0f} s")
    picks: dict[str, list[tuple[float, float]]] = {"top beam": [], "nearest memory": [], "oracle": []}
    for i, ref in enumerate(windows.tolist()):
        choice = choose(net, net.initial(1, SEG // RATIO)[0], memory[i], pool[i])
        scores = [(token_accuracy(ref, c), aligned_token_accuracy(ref, c)) for c in pool[i].tolist()]
        picks["top beam"].append(scores[0])
        picks["nearest memory"].append((token_accuracy(ref, choice.ids), aligned_token_accuracy(ref, choice.ids)))
        picks["oracle"].append(max(scores))
    for name, rows in picks.items():
        print(f"{name:15s} position-wise {sum(a for a, _ in rows) / len(rows):.4f}  "
              f"aligned {sum(b for _, b in rows) / len(rows):.4f}")


if __name__ == "__main__":
    main()
