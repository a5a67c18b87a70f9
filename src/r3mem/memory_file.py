"""`Memory`: the compressed form of a text, and its `.r3m` file format.

A `.r3m` file is a safetensors file: the per-segment snapshots (S, m, d) in fp16,
each segment's token count and (since format 2) an 8-byte digest of each segment's
source tokens (`r3mem.verify`), plus string metadata naming the base model and
checkpoint that wrote it and a checksum of the tensor bytes. Nothing is pickled,
and a file written by another model or checkpoint is refused on expansion. Format 1
files (no digests) still load; their reconstructions cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from r3mem.errors import MemoryFileError
from r3mem.verify import DIGEST_BYTES, matches

FORMAT = "r3mem-memory"
FORMAT_VERSION = "2"
READABLE_VERSIONS = {"1": {"snapshots", "token_counts"}, "2": {"snapshots", "token_counts", "segment_digests"}}


@dataclass
class Memory:
    """Per-segment memory snapshots of one text.

    snapshots[i] is the recurrent memory after reading segments 0..i; it expands to
    segment i. `token_counts[i]` is that segment's length, so expansion knows when
    to stop and the file knows how many source tokens it stands for.
    """

    snapshots: Tensor  # (S, m, d)
    token_counts: list[int]
    segment_len: int
    model_fingerprint: str
    checkpoint_fingerprint: str
    model_name: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    segment_digests: Tensor | None = None  # (S, DIGEST_BYTES) uint8; None: not verifiable

    def verify(self, index: int, ids: list[int]) -> bool | None:
        """Whether `ids` are segment `index`'s source tokens; None when the memory has no digests."""
        return None if self.segment_digests is None else matches(self.segment_digests[index], ids)

    @property
    def memory_tokens(self) -> int:
        return int(self.snapshots.shape[1])

    @property
    def ratio(self) -> float:
        """Nominal compression ratio L/m (a full segment's tokens per memory vector)."""
        return self.segment_len / self.memory_tokens

    @property
    def source_tokens(self) -> int:
        return sum(self.token_counts)

    def __len__(self) -> int:
        return len(self.token_counts)

    def _tensors(self) -> dict[str, Tensor]:
        tensors = {
            "snapshots": self.snapshots.detach().to(torch.float16).contiguous().cpu(),
            "token_counts": torch.tensor(self.token_counts, dtype=torch.int32),
        }
        if self.segment_digests is not None:
            tensors["segment_digests"] = self.segment_digests.to(torch.uint8).contiguous().cpu()
        return tensors

    def save(self, path: str | Path) -> None:
        """Write atomically: a crash leaves no partial `.r3m` file behind."""
        target = Path(path)
        tensors = self._tensors()
        meta = {
            "format": FORMAT,
            # a memory without digests (rebuilt from a store record) is written as what it is: format 1
            "format_version": FORMAT_VERSION if "segment_digests" in tensors else "1",
            "segment_len": str(self.segment_len),
            "model_name": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "checkpoint_fingerprint": self.checkpoint_fingerprint,
            "ratio": f"{self.ratio:g}",
            "source_tokens": str(self.source_tokens),
            "checksum": _checksum(tensors),
            "extra": json.dumps(self.extra, sort_keys=True),
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".r3m", dir=target.parent or ".")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path: str | Path) -> Memory:
        source = Path(path)
        if source.is_dir():
            raise MemoryFileError(f"{source} is a directory, not a .r3m memory file")
        if not source.is_file():
            raise MemoryFileError(f"no such memory file: {source}")
        try:
            from safetensors import safe_open

            with safe_open(str(source), framework="pt") as fh:
                meta = fh.metadata() or {}
            tensors = load_file(str(source))
        except (SafetensorError, OSError, ValueError) as exc:
            raise MemoryFileError(f"{source} is not a readable .r3m file ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise MemoryFileError(f"{source} is not an r3mem memory file")
        names = READABLE_VERSIONS.get(meta.get("format_version", ""))
        if names is None:
            raise MemoryFileError(f"{source} has unsupported format version {meta.get('format_version')}")
        if set(tensors) != names or meta.get("checksum") != _checksum(tensors):
            raise MemoryFileError(f"{source} is corrupt: its checksum does not match its contents")
        digests = tensors.get("segment_digests")
        # The checksum covers the bytes, not the dtypes that say how to read them.
        if tensors["snapshots"].dtype != torch.float16 or tensors["token_counts"].dtype != torch.int32 \
                or (digests is not None and digests.dtype != torch.uint8):
            raise MemoryFileError(f"{source} is corrupt: its tensors do not have the dtypes .r3m files use")
        counts = [int(c) for c in tensors["token_counts"].tolist()]
        if tensors["snapshots"].ndim != 3 or tensors["snapshots"].shape[0] != len(counts) \
                or (digests is not None and tuple(digests.shape) != (len(counts), DIGEST_BYTES)):
            raise MemoryFileError(f"{source} is corrupt: snapshot and segment counts disagree")
        try:
            segment_len, extra = int(meta["segment_len"]), json.loads(meta.get("extra", "{}"))
            fingerprints = meta["model_fingerprint"], meta["checkpoint_fingerprint"]
        except (KeyError, ValueError) as exc:
            raise MemoryFileError(f"{source} is corrupt: its metadata is damaged ({exc!r})") from exc
        if segment_len < 1 or not isinstance(extra, dict):
            raise MemoryFileError(f"{source} is corrupt: its metadata is damaged")
        return cls(
            snapshots=tensors["snapshots"],
            token_counts=counts,
            segment_len=segment_len,
            model_fingerprint=fingerprints[0],
            checkpoint_fingerprint=fingerprints[1],
            model_name=meta.get("model_name", ""),
            extra=extra,
            segment_digests=digests,
        )


def _checksum(tensors: dict[str, Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]
