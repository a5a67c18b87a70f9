"""Verifiable reconstruction: a short digest of each segment's source tokens, kept beside its memory.

A memory regenerates text; on its own nothing says whether what came back is what went in.
Compression therefore records, per segment, the first 8 bytes of the SHA-256 of the source
token ids, and expansion compares the regenerated ids against it: a segment either verifies
(it is the source, token for token, up to a 2^-64 collision) or is known to differ. The
digest cannot rebuild the text and adds 8 bytes per segment; the memory itself is what
carries the content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DIGEST_BYTES = 8


def segment_digest(ids: Sequence[int]) -> bytes:
    """The digest of one segment's token ids (little-endian int32, so it is the same on every machine)."""
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).digest()[:DIGEST_BYTES]


def digest_rows(segments: Sequence[Sequence[int]]) -> Tensor:
    """(S, DIGEST_BYTES) uint8: one digest per segment, the form a `.r3m` file stores."""
    rows = np.frombuffer(b"".join(segment_digest(s) for s in segments), dtype=np.uint8)
    return torch.from_numpy(rows.reshape(len(segments), DIGEST_BYTES).copy())


def matches(row: Tensor, ids: Sequence[int]) -> bool:
    """Whether `ids` are the tokens whose digest is `row`."""
    return bytes(row.to(torch.uint8).tolist()) == segment_digest(ids)


@dataclass
class Reconstruction:
    """Expanded text, the segments it came from, and whether each is its source token for token."""

    text: str
    segments: list[int]
    verified: list[bool | None]  # None: the memory holds no digests

    @property
    def exact(self) -> bool:
        """Every segment verified: the text is what was compressed."""
        return all(v is True for v in self.verified)

    def summary(self) -> str:
        return summary(self.verified, self.segments)


def summary(verdicts: Sequence[bool | None], indices: Sequence[int]) -> str:
    """One line for a person: how many regenerated segments are the source, and which are not."""
    if any(v is None for v in verdicts):
        return "not verifiable: this memory file holds no source digests (written before r3mem kept them)"
    wrong = [i for i, ok in zip(indices, verdicts, strict=True) if not ok]
    head = f"verified: {len(verdicts) - len(wrong)} of {len(verdicts)} segment(s) regenerate their source exactly"
    if not wrong:
        return head
    shown = ", ".join(map(str, wrong[:10])) + (f" and {len(wrong) - 10} more" if len(wrong) > 10 else "")
    return f"{head}; segment(s) {shown} differ from it"
