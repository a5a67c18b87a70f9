"""Writes records to a store forever, printing each id once its transaction has committed.

Run as a subprocess by test_store_crash.py, which kills it with SIGKILL at a random
moment: every id printed is an acknowledged write and must survive the kill intact.
"""

from __future__ import annotations

import sys

import torch

from r3mem.store.location import open_backend
from r3mem.store.namespace import Namespace
from r3mem.store.record import Record, encode_key, encode_memory, new_id


def synthetic_record(namespace: Namespace, n: int, parent: str | None = None) -> Record:
    memory = torch.randn(2, 4, 64)
    return Record(
        id=new_id(), namespace=namespace, level="paragraph" if parent else "document", parent_id=parent,
        memory=encode_memory(memory, "float16"), memory_dtype="float16", memory_shape=(2, 4, 64),
        segment_tokens=[16, 5], key=encode_key(torch.randn(64)), text=f"note {n} " * 40,
        metadata={"n": n}, model_fingerprint="synthetic", checkpoint_fingerprint="synthetic",
    )


def main(url: str) -> None:
    backend = open_backend(url)
    namespace = Namespace(user="crash")
    n = 0
    while True:
        parent = synthetic_record(namespace, n)
        children = [synthetic_record(namespace, n, parent.id) for _ in range(3)]
        backend.insert([parent, *children])  # one transaction: all four or none
        print(" ".join(r.id for r in (parent, *children)), flush=True)
        n += 1


if __name__ == "__main__":
    main(sys.argv[1])
