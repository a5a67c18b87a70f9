"""Probe for `r3mem.decode.slot_bags`: how much of each chunk's token multiset greedy pursuit reads back from its slot.

    .venv/bin/python scripts/probe_slot_bags.py --ratio 8 --windows 8
    .venv/bin/python scripts/probe_slot_bags.py --ratio 4 --windows 8

Prints, over every chunk of the windows, the share of its tokens found by pursuit (subtracting each
token found) and by ranking all tokens once by their agreement with the slot (no subtraction).
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from probe_windows import CONFIG, load_windows

from r3mem.base_model import embedding_table
from r3mem.decode.slot_bags import recover_bags

SEG = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=int, default=8)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--text", choices=("train", "val"), default="train")
    parser.add_argument("--config", default=CONFIG)
    args = parser.parse_args()
    r3, windows = load_windows(args.windows, SEG, args.text, args.config)
    net = r3.network
    slots, per = SEG // args.ratio, args.ratio
    memory = net.write(net.initial(args.windows, slots), windows).half().float()  # as a .r3m file keeps it
    table = embedding_table(net.causal_lm).float()
    sums = memory.reshape(-1, memory.shape[-1]) * per**0.5  # undo chunk_pool's 1/sqrt(count)
    bags = recover_bags(sums, torch.full((sums.shape[0],), per), table).tolist()
    ranked = (2 * sums @ table.T - table.pow(2).sum(-1)).topk(per).indices.tolist()
    truths = windows.reshape(-1, per).tolist()
    found = sum(sum((Counter(t) & Counter(b)).values()) for t, b in zip(truths, bags, strict=True))
    once = sum(sum((Counter(t) & Counter(r)).values()) for t, r in zip(truths, ranked, strict=True))
    total = len(truths) * per
    print(f"ratio {args.ratio}: pursuit finds {found / total:.3f} of {total} tokens, ranking once {once / total:.3f}")


if __name__ == "__main__":
    main()
