"""Paired comparison of two `r3mem eval reconstruct` results on the same segments.

Usage: python scripts/compare_reconstructions.py A.json B.json

For each ratio both hold, prints the mean position-wise token accuracy of each, the mean of the
per-segment differences B − A with its 95 % interval, and how many segments read the same. Pairing
removes the segments' own difficulty, which is most of the spread, so a change of decoding is judged
on far fewer segments than two unpaired means would need.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from statistics import fmean, stdev


def accuracies(path: str) -> dict[float, list[float]]:
    result = json.loads(Path(path).read_text(encoding="utf-8"))
    if "segment_token_accuracy" not in result:
        sys.exit(f"{path} has no per-segment accuracies (written before `r3mem eval reconstruct` kept them)")
    return {row["ratio"]: row["token_accuracy"] for row in result["segment_token_accuracy"]
            if row["method"] == "r3mem"}


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.splitlines()[2])
    first, second = accuracies(sys.argv[1]), accuracies(sys.argv[2])
    for ratio in sorted(set(first) & set(second)):
        n = min(len(first[ratio]), len(second[ratio]))
        a, b = first[ratio][:n], second[ratio][:n]
        differences = [y - x for x, y in zip(a, b, strict=True)]
        half = 1.96 * stdev(differences) / math.sqrt(n) if n > 1 else math.nan
        mean = fmean(differences)
        same = sum(x == y for x, y in zip(a, b, strict=True))
        print(f"ratio {ratio:g}: {n} segments, A {fmean(a):.4f}, B {fmean(b):.4f}, B - A {mean:+.4f} "
              f"(95 % {mean - half:+.4f} to {mean + half:+.4f}), {same} read the same")


if __name__ == "__main__":
    main()
