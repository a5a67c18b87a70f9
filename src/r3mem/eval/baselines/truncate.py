"""Truncation baseline: keep the first k tokens of a segment; the rest cannot come back.

It is the floor a compressor must beat at the same budget of k tokens: the budget buys a
verbatim prefix, so its reconstruction is exact up to position k and empty after it.
"""

from __future__ import annotations

from collections.abc import Sequence

NAME = "truncate"


def compress(r3, ids: Sequence[int], k: int) -> list[int]:
    """The stored form: the first k token ids."""
    return list(ids[:k])


def expand(r3, kept: Sequence[int], n_tokens: int) -> list[int]:
    """The reconstruction is the stored prefix itself; it sees nothing but those k tokens."""
    return list(kept)
