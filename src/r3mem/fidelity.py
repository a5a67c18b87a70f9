"""How faithfully a regenerated token stream matches its source.

The two reconstruction measures every layer reports: the demo and training's validation use
them, and the evaluation harness (`r3mem.eval.metrics`, which re-exports them) sits on top.
Exact, hand-checkable definitions, standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def token_accuracy(reference_ids: Sequence[int], hypothesis_ids: Sequence[int]) -> float:
    """Position-wise token accuracy measured over the reference length.

    ``sum(ref[i] == hyp[i] for i < len(ref)) / len(ref)``. A hypothesis shorter than the
    reference counts every missing position as wrong; extra hypothesis tokens are ignored.
    Anchoring on the reference length makes the score answer "how much of the original token
    stream was reproduced in place", which is what a reconstruction-from-memory model must do.

    Edge case: an empty reference scores 1.0 if the hypothesis is also empty (perfect
    reconstruction of nothing) and 0.0 otherwise (the model hallucinated content).
    """
    n = len(reference_ids)
    if n == 0:
        return 1.0 if len(hypothesis_ids) == 0 else 0.0
    hits = sum(1 for r, h in zip(reference_ids, hypothesis_ids, strict=False) if r == h)
    return hits / n


def aligned_token_accuracy(reference_ids: Sequence[int], hypothesis_ids: Sequence[int]) -> float:
    """Tokens reproduced in order, allowing shifts: ``LCS(ref, hyp) / max(len(ref), len(hyp))``.

    Position-wise accuracy scores a regeneration that is verbatim but for one inserted token
    near the start as almost 0, because every later token is off by one. This measure aligns
    first, so such a regeneration scores almost 1, while dividing by the longer sequence still
    charges every missing, wrong or extra token. It equals 1 exactly when the two are equal, is
    never below position-wise accuracy for equal lengths, and is reported beside it, not
    instead of it. Two empty sequences score 1.0.
    """
    longest = max(len(reference_ids), len(hypothesis_ids))
    if longest == 0:
        return 1.0
    return lcs_length(reference_ids, hypothesis_ids) / longest


def lcs_length(a: Sequence[T], b: Sequence[T]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``.

    Classic O(len(a) * len(b)) DP keeping only two rows, each sized by the shorter input, so
    memory is O(min(len(a), len(b))). A shared prefix/suffix always belongs to some LCS, so it
    is counted directly first: near-identical reconstructions then cost little more than O(n).
    """
    a, b, shared = trim_common_affixes(a, b)
    if len(a) < len(b):
        a, b = b, a  # b is now the shorter one: rows are sized by it
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return shared + prev[-1]


def trim_common_affixes(a: Sequence[T], b: Sequence[T]) -> tuple[Sequence[T], Sequence[T], int]:
    """Strip the longest common prefix and suffix; return the rests and the stripped length.

    Valid for both LCS and edit distance: matching affix elements can always be aligned with
    each other at no cost without making the optimum worse.
    """
    start = 0
    limit = min(len(a), len(b))
    while start < limit and a[start] == b[start]:
        start += 1
    end = 0
    while end < limit - start and a[len(a) - 1 - end] == b[len(b) - 1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end], start + end
