"""Probe beside the shipped decoder (`r3mem.decode.cycle_decoding`, `--samples N`): its pick against the best one.

R3Mem's cycle loss asks mem(expand(mem(x))) ~= mem(x). At decoding time the same test can choose
among candidate expansions: the source itself re-compresses to exactly the stored memory, and the
memory pools token embeddings chunk by chunk, so a candidate shifted by a skipped word lands
further away. This script draws candidates (beam search's, and optionally samples), then reports
position-wise and aligned token accuracy and BLEU-4, at ratio 4, of: the top beam (the default
decoding), what `--samples` ships (`choose`), the nearest in memory among the candidates within a
margin of the likeliest one's mean token NLL (for several margins; no limit was the first version),
and the best candidate in hindsight (the oracle).

    .venv/bin/python scripts/probe_memory_rerank.py --windows 16 --beams 4 --samples 8 --text train

`--text train` draws windows from training books, so settings chosen here never see held-out text.
"""

from __future__ import annotations

import argparse
import time

import torch
from probe_windows import CONFIG, load_windows

from r3mem.decode.cycle_decoding import choose, draw
from r3mem.decode.options import Decoding
from r3mem.eval.metrics import aligned_token_accuracy, bleu4, token_accuracy

SEG, RATIO = 128, 4
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)  # mean token NLL above the likeliest candidate's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--samples", type=int, default=0)
    parser.add_argument("--text", choices=("train", "val"), default="train")
    parser.add_argument("--config", default=CONFIG)
    args = parser.parse_args()
    r3, windows = load_windows(args.windows, SEG, args.text, args.config)
    net = r3.network
    memory = net.write(net.initial(args.windows, SEG // RATIO), windows)
    began = time.time()
    pool = draw(net, memory, SEG, Decoding(beams=args.beams, samples=args.samples, guidance=0.0))
    print(f"{pool.shape[1]} candidates per window in {time.time() - began:.0f} s")
    picks: dict[str, list[tuple[float, float, float]]] = {"top beam": [], "shipped choice": [], "oracle": []}
    picks |= {f"nearest within +{m:g} nats": [] for m in MARGINS}
    for i, ref in enumerate(windows.tolist()):
        choice = choose(net, net.initial(1, SEG // RATIO)[0], memory[i], pool[i])
        cands = pool[i].tolist()
        ref_text = r3.detokenize(ref)
        scores = [(token_accuracy(ref, c), aligned_token_accuracy(ref, c), bleu4(ref_text, r3.detokenize(c)))
                  for c in cands]
        picks["top beam"].append(scores[0])
        picks["shipped choice"].append(scores[cands.index(choice.ids)])
        picks["oracle"].append(max(scores))
        # nearest in memory among the candidates whose mean token NLL is within a margin of the likeliest
        again = net.write(net.initial(len(cands), SEG // RATIO), pool[i])
        distance = (again - memory[i : i + 1]).pow(2).mean((1, 2))
        nll = torch.tensor([float(net.read(memory[i : i + 1], pool[i, j : j + 1]).loss) for j in range(len(cands))])
        for m in MARGINS:
            allowed = nll <= nll.min() + m
            picks[f"nearest within +{m:g} nats"].append(scores[int(torch.where(allowed, distance, torch.inf).argmin())])
    for name, rows in picks.items():
        print(f"{name:28s} position-wise {sum(r[0] for r in rows) / len(rows):.4f}  "
              f"aligned {sum(r[1] for r in rows) / len(rows):.4f}  bleu4 {sum(r[2] for r in rows) / len(rows):.4f}")


if __name__ == "__main__":
    main()
