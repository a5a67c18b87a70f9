"""Turning text into records: the hierarchy, batched compression and retrieval keys.

A document becomes a tree of units (document -> paragraphs -> sentences -> entities);
a unit whose text equals its parent's is skipped, its children moving up, so a
one-sentence note is one record, not four copies of itself. Messages become turns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from r3mem.api import R3Mem
from r3mem.errors import InvalidInput
from r3mem.hierarchy import build_tree
from r3mem.memory_file import Memory
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record, encode_key, encode_memory, new_id

_BATCH = 16  # single-segment units compressed together in one padded forward pass
ROLES = ("user", "assistant", "system", "tool")


@dataclass(frozen=True)
class Unit:
    level: str
    text: str
    parent: int | None  # index of the parent unit in the same list
    extra: dict


def document_units(text: str, levels: tuple[str, ...]) -> list[Unit]:
    """Pre-order units of `text` at the requested levels, deduplicated against their parents."""
    units: list[Unit] = []

    def visit(node, parent: int | None, parent_text: str | None) -> None:
        here = parent
        if node.level in levels and node.text.strip() and node.text != parent_text:
            units.append(Unit(node.level, node.text, parent, {}))
            here = len(units) - 1
        for child in node.children:
            visit(child, here, node.text if here != parent else parent_text)
        if node.level == "sentence" and "entity" in levels:
            for entity in node.entities:
                units.append(Unit("entity", entity.text, here, {"kind": entity.kind}))

    visit(build_tree(text), None, None)
    return units


def message_units(messages: list) -> list[Unit]:
    """One `turn` unit per message `{role, content}`; the text keeps the role, as a reader needs it."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("messages must be a non-empty list of {role, content} objects")
    units = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InvalidInput(f"message {i} must be an object with a string 'content'")
        role = message.get("role", "user")
        if role not in ROLES:
            raise InvalidInput(f"message {i}: role must be one of {', '.join(ROLES)}, got {role!r}")
        if not message["content"].strip():
            raise InvalidInput(f"message {i} is empty")
        units.append(Unit("turn", f"{role}: {message['content']}", None, {"role": role}))
    return units


class RecordEncoder:
    """Compresses units with one `R3Mem` at one ratio and derives their retrieval keys."""

    def __init__(self, r3: R3Mem, ratio: float = 4, memory_dtype: str = "float16", lazy_keys: bool = False) -> None:
        """`lazy_keys`: a text record is written with its memory's key (`key_of`, free) instead of the
        trained head's, which `MemoryStore.rekey` writes when a recall first reads keys (the head's
        pass costs about two thirds of compression; the default recall never reads keys). A
        memory-only record gets the head's key at once: its text is gone after the add."""
        self.r3, self.ratio, self.memory_dtype = r3, ratio, memory_dtype
        self.m = r3.config.memory_tokens_for(ratio)
        self.lazy_keys = lazy_keys

    def memories(self, texts: list[str]) -> list[Memory]:
        """One `Memory` per text, each unit's own length over the ratio (`R3Mem.compress_units`)."""
        return self.r3.compress_units(texts, self.ratio)

    @staticmethod
    def key_of(snapshots: torch.Tensor) -> np.ndarray:
        """The retrieval key: the last snapshot's memory vectors, averaged and unit-normalised.

        It is read off the memory itself, so the key costs nothing beyond compression and a
        query is keyed the same way (compress it, average); recall refines the shortlist it
        gives by query likelihood under each memory.
        """
        vector = snapshots[-1].float().mean(0).numpy()
        return vector / max(float(np.linalg.norm(vector)), 1e-8)

    def query_key(self, query: str) -> np.ndarray:
        """The question's key: the trained query head when the checkpoint has one, else its memory's."""
        head = self.r3.key_head
        if head is not None:
            return self.r3.key_vectors([query], "query")[0]
        return self.key_of(self.memories([query])[0].snapshots)

    def record_keys(self, texts: list[str], memories: list[Memory]) -> list[np.ndarray]:
        """Each record's key: the trained record head over its text (one batched partial forward pass)
        when the checkpoint has one, else its memory averaged (`key_of`)."""
        head = self.r3.key_head
        if head is None:
            return [self.key_of(mem.snapshots) for mem in memories]
        return self.r3.key_vectors(texts, "record")

    def _complete_keys(self, records: list[Record], texts: list[str], memories: list[Memory]) -> list[np.ndarray]:
        """`record_keys`, except that with `lazy_keys` text records keep their memory's key for now."""
        head = self.r3.key_head
        # rekey finds a stale key by its width: a head as wide as the memory could not tell them apart
        if not self.lazy_keys or head is None or head.config.dim == self.r3.hidden_size:
            return self.record_keys(texts, memories)
        keys = [self.key_of(mem.snapshots) for mem in memories]
        now = [i for i, record in enumerate(records) if record.text is None]
        for i, key in zip(now, self.record_keys([texts[i] for i in now], [memories[i] for i in now]), strict=True):
            keys[i] = key
        return keys

    def records(self, units: list[Unit], namespace: Namespace, metadata: dict, store_text: bool,
                defer: bool = False) -> list[Record]:
        """Compress every unit and wrap it as a record; parents precede children.

        With `defer` (text records only) nothing is compressed: the records are `pending`, their
        memory written later by `complete`, in batches."""
        ids = [new_id() for _ in units]
        records = [
            Record(id=ids[i], namespace=namespace, level=unit.level,
                   parent_id=None if unit.parent is None else ids[unit.parent], memory=b"",
                   memory_dtype=self.memory_dtype, memory_shape=(), segment_tokens=[], key=b"",
                   text=unit.text if store_text else None, metadata={**metadata, **unit.extra},
                   model_fingerprint="", checkpoint_fingerprint="")
            for i, unit in enumerate(units)
        ]
        return records if defer and store_text else self.complete(records, [u.text for u in units])

    def complete(self, records: list[Record], texts: list[str] | None = None) -> list[Record]:
        """The records with their memories and keys written (same ids and times, fresh checksums)."""
        texts = texts if texts is not None else [r.text or "" for r in records]
        memories = self.memories(texts)
        keys = self._complete_keys(records, texts, memories)
        return [
            replace(record, memory=encode_memory(mem.snapshots, self.memory_dtype), memory_dtype=self.memory_dtype,
                    memory_shape=tuple(mem.snapshots.shape), segment_tokens=list(mem.token_counts),
                    key=encode_key(key), model_fingerprint=mem.model_fingerprint,
                    checkpoint_fingerprint=mem.checkpoint_fingerprint, memory_checksum="", checksum="")
            for record, mem, key in zip(records, memories, keys, strict=True)
        ]

    def as_memory(self, record: Record) -> Memory:
        """A record's memory as a `Memory` the model can expand (checksums verified)."""
        return Memory(snapshots=record.memory_tensor(), token_counts=list(record.segment_tokens),
                      segment_len=self.r3.config.segment_len, model_fingerprint=record.model_fingerprint,
                      checkpoint_fingerprint=record.checkpoint_fingerprint)
