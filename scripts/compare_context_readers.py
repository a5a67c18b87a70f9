"""Compare context readers on cached distillation draws: mean sparse KL against the window's.

    python scripts/compare_context_readers.py --cache runs/context-distill-v32-cached/cache \
        --draws 90:110 untrained runs/context-distill-v32-cached/reader runs/context-distill-v32-mlp/reader

A reader is a directory saved by `ContextReader.save`, or `untrained` (the zero-init reader of
the cache's verbatim setting). Draws should be ones the readers did not train on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from r3mem.api import R3Mem
from r3mem.context_memory import ContextConfig, ContextReader
from r3mem.train import distill_cache
from r3mem.train.context_distill import DistillConfig, cached_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--draws", required=True, help="first:last (last excluded)")
    parser.add_argument("readers", nargs="+")
    args = parser.parse_args()
    cache = Path(args.cache)
    settings = json.loads((cache / "manifest.json").read_text())
    first, last = (int(x) for x in args.draws.split(":"))
    indexes = [i for i in distill_cache.built_draws(cache) if first <= i < last]
    draws = [distill_cache.load_draw(cache, i) for i in indexes]
    r3 = R3Mem.load()
    cfg = DistillConfig(target=settings["target"], budget=settings["budget"], verbatim=settings["verbatim"])
    for name in args.readers:
        reader = (ContextReader(r3.network.hidden_size, ContextConfig(verbatim=settings["verbatim"]))
                  if name == "untrained" else ContextReader.load(name, r3.network.hidden_size))
        assert reader is not None, f"no reader in {name}"
        diffs = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for draw in draws:
                kl, kl_window = cached_loss(r3, reader, cfg, [draw])
                diffs.append(float(kl) - kl_window)
        mean = sum(diffs) / len(diffs)
        se = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 / len(diffs) ** 0.5
        print(f"{name}: memory - window KL {mean:+.4f} (SE {se:.4f}) over {len(diffs)} draws")


if __name__ == "__main__":
    main()
