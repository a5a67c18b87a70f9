"""`Record`: one stored memory, and the byte encodings of its tensors.

A record's memory is the snapshots (S, m, d) of one unit of the hierarchy, stored as
fp16 or int8 (per-vector absmax scales) bytes with its shape. Two checksums guard it:
`memory_checksum` over dtype, shape and bytes, and `checksum` over everything the
record says, so a reader can tell an intact record from a torn or tampered one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from r3mem.errors import CorruptRecord, InvalidInput
from r3mem.store.namespace import Namespace

if TYPE_CHECKING:  # torch only for the tensors: listing and reading records needs none
    import torch

LEVELS = ("document", "paragraph", "sentence", "entity", "turn")
MEMORY_DTYPES = ("float16", "int8")


def encode_memory(tensor: torch.Tensor, dtype: str) -> bytes:
    """(S, m, d) float tensor -> bytes. int8 keeps one fp16 scale per vector in front of the codes."""
    x = tensor.detach().float().cpu().numpy()
    if dtype == "float16":
        return x.astype("<f2").tobytes()
    if dtype == "int8":
        vectors = x.reshape(-1, x.shape[-1])
        scale = np.abs(vectors).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        codes = np.clip(np.rint(vectors / scale), -127, 127).astype(np.int8)
        return scale.astype("<f2").tobytes() + codes.tobytes()
    raise InvalidInput(f"memory dtype must be one of {', '.join(MEMORY_DTYPES)}, got {dtype!r}")


def memory_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes an encoded memory of `dtype` and `shape` has; CorruptRecord for any other dtype or
    a shape no tensor has (a row or an imported archive may hold anything)."""
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise CorruptRecord(f"memory shape {shape!r} is not a tuple of positive sizes")
    count = math.prod(shape)
    if dtype == "float16":
        return 2 * count
    if dtype == "int8":
        return 2 * (count // shape[-1]) + count  # one fp16 scale per vector, then the codes
    raise CorruptRecord(f"unknown memory dtype {dtype!r}")


def decode_memory(blob: bytes, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `encode_memory`; refuses bytes whose length does not fit the shape."""
    import torch

    need = memory_nbytes(dtype, shape)
    if len(blob) != need:
        raise CorruptRecord(f"{dtype} memory blob has {len(blob)} bytes, shape {shape} needs {need}")
    if dtype == "float16":
        return torch.from_numpy(np.frombuffer(blob, "<f2").astype(np.float32).reshape(shape))
    rows = math.prod(shape) // shape[-1]
    scale = np.frombuffer(blob[: 2 * rows], "<f2").astype(np.float32).reshape(rows, 1)
    codes = np.frombuffer(blob[2 * rows :], np.int8).astype(np.float32).reshape(rows, -1)
    return torch.from_numpy((codes * scale).reshape(shape))


def encode_key(vector: torch.Tensor | np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).astype("<f2").tobytes()


def decode_key(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, "<f2").astype(np.float32)


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))  # length-prefixed: no ambiguity between fields
        digest.update(part)
    return digest.hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Record:
    """One unit of remembered text: its memory, retrieval key and (optionally) its text."""

    id: str
    namespace: Namespace
    level: str
    parent_id: str | None
    memory: bytes
    memory_dtype: str
    memory_shape: tuple[int, ...]  # (S, m, d)
    segment_tokens: list[int]  # tokens per segment, so expansion knows when to stop
    key: bytes  # fp16 retrieval key
    text: str | None  # None when the caller chose store_text=False
    metadata: dict
    model_fingerprint: str
    checkpoint_fingerprint: str
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    memory_checksum: str = ""
    checksum: str = ""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        self.memory_shape = tuple(int(n) for n in self.memory_shape)
        self.updated_at = self.updated_at or self.created_at
        if not self.memory_checksum:
            self.memory_checksum = self.compute_memory_checksum()
        if not self.checksum:
            self.checksum = self.compute_checksum()

    @property
    def token_count(self) -> int:
        return sum(self.segment_tokens)

    @property
    def pending(self) -> bool:
        """A text record whose memory is not written yet (`MemoryStore.flush` writes it)."""
        return self.memory_shape == () and not self.memory and not self.key and self.text is not None

    def compute_memory_checksum(self) -> str:
        return _sha256(self.memory_dtype.encode(), json.dumps(self.memory_shape).encode(), self.memory)

    def compute_checksum(self) -> str:
        fields = {
            "id": self.id, "namespace": self.namespace.as_dict(), "level": self.level,
            "parent_id": self.parent_id, "segment_tokens": self.segment_tokens, "text": self.text,
            "metadata": self.metadata, "model": self.model_fingerprint, "checkpoint": self.checkpoint_fingerprint,
            "created_at": repr(self.created_at), "updated_at": repr(self.updated_at),
        }
        header = json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()
        return _sha256(header, self.memory_checksum.encode(), self.key)

    def verify(self) -> None:
        """Raise CorruptRecord unless both checksums match and the blobs fit their shapes."""
        if self.memory_checksum != self.compute_memory_checksum():
            raise CorruptRecord(f"record {self.id}: memory checksum mismatch (corrupt memory blob); "
                                "delete it or restore it from an export")
        if self.checksum != self.compute_checksum():
            raise CorruptRecord(f"record {self.id}: record checksum mismatch (corrupt or tampered row); "
                                "delete it or restore it from an export")
        if self.pending:  # nothing to decode yet; its text is covered by the checksum
            return
        # The checksums are unkeyed, so a crafted archive can carry matching ones; this keeps such
        # a record out, instead of failing later inside recall or expand.
        if len(self.memory) != memory_nbytes(self.memory_dtype, self.memory_shape) or len(self.key) % 2:
            raise CorruptRecord(f"record {self.id}: its memory or key blob does not fit its shape")

    def memory_tensor(self) -> torch.Tensor:
        if self.pending:
            raise InvalidInput(f"record {self.id}: its memory is not written yet; flush the store first")
        self.verify()
        return decode_memory(self.memory, self.memory_dtype, self.memory_shape)

    def key_vector(self) -> np.ndarray:
        return decode_key(self.key)

    def changed(self, **changes) -> Record:
        """A copy with `changes`, a new update time and fresh checksums."""
        new = replace(self, **changes, updated_at=time.time(), memory_checksum="", checksum="")
        return new

    def summary(self) -> dict:
        """Everything but the tensors: what the CLI and HTTP API show."""
        return {
            "id": self.id, **{k: v for k, v in self.namespace.as_dict().items()}, "level": self.level,
            "parent_id": self.parent_id, "text": self.text, "metadata": self.metadata,
            "memory_dtype": self.memory_dtype, "memory_shape": list(self.memory_shape),
            "token_count": self.token_count, "checkpoint": self.checkpoint_fingerprint,
            "created_at": self.created_at, "updated_at": self.updated_at, "checksum": self.checksum,
        }
