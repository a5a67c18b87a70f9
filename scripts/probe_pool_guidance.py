"""Probe for pool guidance (`r3mem.decode.pool_guidance`, `--guidance S`): accuracy at several strengths, spreads, bags.

Compresses windows of 128 tokens at one ratio with the shipped checkpoint, expands each at every
strength given, and prints position-wise and aligned token accuracy, BLEU-4 and exact matches.
The default strength (`r3mem.decode.options.DEFAULT_GUIDANCE`) was chosen with

    .venv/bin/python scripts/probe_pool_guidance.py --ratio 4 --windows 8 --strengths 0,0.5,1,2,4,8
    .venv/bin/python scripts/probe_pool_guidance.py --ratio 8 --windows 8 --strengths 0,1,2,4

and the share of a chunk's charge paid as it is written (`r3mem.decode.pool_guidance.DEFAULT_SPREAD`) with

    .venv/bin/python scripts/probe_pool_guidance.py --ratio 8 --windows 16 --strengths 4 --spreads 0,0.25

and the charge for a token outside its chunk's recovered bag (`r3mem.decode.pool_guidance.DEFAULT_BAG`) with

    .venv/bin/python scripts/probe_pool_guidance.py --ratio 8 --windows 16 --beams 16 --bags 0,3,4,5,6

`--text train` (the default) draws windows from training books, so a strength chosen here never saw
the held-out text the card measures; `--show N` prints window N chunk by chunk, marking chunks
that came back exact, as the right tokens in another order, or otherwise.
"""

from __future__ import annotations

import argparse
import time

from probe_windows import CONFIG, load_windows
from transformers import GenerationConfig

from r3mem.decode.beam import candidates
from r3mem.decode.options import DEFAULT_BAG, DEFAULT_SPREAD, Decoding
from r3mem.eval.metrics import aligned_token_accuracy, bleu4, token_accuracy

SEG = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=int, default=4)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--strengths", default="0,4", help="comma-separated guidance strengths")
    parser.add_argument("--spreads", default=str(DEFAULT_SPREAD),
                        help="comma-separated shares of each chunk's charge paid before its last token")
    parser.add_argument("--bags", default=str(DEFAULT_BAG),
                        help="comma-separated charges (nats) for a token outside its chunk's recovered bag")
    parser.add_argument("--text", choices=("train", "val"), default="train")
    parser.add_argument("--show", type=int, help="print this window chunk by chunk at the last setting")
    parser.add_argument("--config", default=CONFIG)
    args = parser.parse_args()
    r3, windows = load_windows(args.windows, SEG, args.text, args.config)
    net = r3.network
    slots = SEG // args.ratio
    memory = net.write(net.initial(args.windows, slots), windows).half().float()  # as a .r3m file keeps it
    refs = windows.tolist()
    settings = [(float(s), float(p), float(b)) for s in args.strengths.split(",") for p in args.spreads.split(",")
                for b in args.bags.split(",")]
    for strength, spread, bag in settings:
        began = time.time()
        # beams go straight to the search, so a probe may try more than the library's bound
        guide = Decoding(beams=1, guidance=strength, spread=spread, bag=bag)
        outs = candidates(net, memory, SEG, GenerationConfig(num_beams=args.beams), guide)[:, 0].tolist()
        position = sum(token_accuracy(r, o) for r, o in zip(refs, outs, strict=True)) / len(refs)
        aligned = sum(aligned_token_accuracy(r, o) for r, o in zip(refs, outs, strict=True)) / len(refs)
        bleu = sum(bleu4(r3.detokenize(r), r3.detokenize(o)) for r, o in zip(refs, outs, strict=True)) / len(refs)
        exact = sum(r == o for r, o in zip(refs, outs, strict=True))
        print(f"ratio {args.ratio}, {args.beams} beams, guidance {strength:g} spread {spread:g} bag {bag:g}: "
              f"position-wise {position:.3f}, "
              f"aligned {aligned:.3f}, BLEU-4 {bleu:.3f}, exact {exact}/{len(refs)} ({time.time() - began:.0f} s)",
              flush=True)
    if args.show is not None:
        ref, out = refs[args.show], outs[args.show]
        size = SEG // slots
        for j in range(slots):
            a, b = ref[j * size : (j + 1) * size], out[j * size : (j + 1) * size]
            mark = "exact" if a == b else "order" if sorted(a) == sorted(b) else "wrong"
            print(f"{j:3d} {mark}  {r3.detokenize(a)!r}  |  {r3.detokenize(b)!r}")


if __name__ == "__main__":
    main()
