"""`r3mem bench-recall`: recall latency of the store at 1k, 10k and 100k records.

Real records first: LoCoMo turns compressed by the loaded model and embedded by the store's
embedder (one conversation's worth). The store is then filled to each size with copies of those
records under new ids, their keys and vectors jittered so ties do not flatter the ranking,
because compressing and embedding 100k turns would take hours on a CPU while the recall path
under test is the same: the copies are indexed (lexical rows, vectors) in their insert's
transaction, as every add is. Queries are that conversation's LoCoMo questions, encoded on every
recall. Each recall is timed end to end through `MemoryStore.recall`, after one cold call per
size whose time (it reads the vector matrix) is reported apart. Each row says whether its method
is the store's default.
"""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from r3mem.api import R3Mem
from r3mem.eval.locomo import load_locomo, questions, turns
from r3mem.eval.metrics import percentile
from r3mem.store.encoder import RecordEncoder, Unit
from r3mem.store.index import IndexEntry, encode_vector
from r3mem.store.indexing import entries
from r3mem.store.location import open_backend
from r3mem.store.memory_store import MemoryStore
from r3mem.store.namespace import Namespace
from r3mem.store.recall import DEFAULT_METHOD
from r3mem.store.record import Record, encode_key, new_id

NAMESPACE = Namespace(user="bench-recall")
_INSERT_CHUNK = 2000


def real_records(store: MemoryStore, r3: R3Mem, locomo: Path, pool: int) -> tuple[list[Record], list[IndexEntry],
                                                                                    list[str]]:
    sample = load_locomo(locomo, 1)[0]
    units = [Unit("turn", t.text, None, {}) for t in turns(sample)[:pool]]
    records = RecordEncoder(r3).records(units, NAMESPACE, {}, store_text=True)
    return records, entries(records, store.dense.embedder, r3), [q.question for q in questions(sample, None)]


def _jitter(vector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = vector + rng.normal(0, 0.01, vector.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy)


def _copies(pool: list[Record], index: list[IndexEntry], count: int,
            rng: np.random.Generator) -> tuple[list[Record], list[IndexEntry]]:
    records, rows = [], []
    for i in range(count):
        source, entry = pool[i % len(pool)], index[i % len(pool)]
        copy = replace(source, id=new_id(), key=encode_key(_jitter(source.key_vector(), rng)), checksum="")
        vector = np.frombuffer(entry.vector or b"", "<f2").astype(np.float32)
        records.append(copy)
        rows.append(replace(entry, record_id=copy.id, vector=encode_vector(_jitter(vector, rng))))
    return records, rows


def fill(store: MemoryStore, pool: list[Record], index: list[IndexEntry], target: int,
         rng: np.random.Generator) -> float:
    """Insert indexed copies until the namespace holds `target` records; returns seconds spent."""
    t0 = time.perf_counter()
    have = store.stats(NAMESPACE)["records"]
    while have < target:
        records, rows = _copies(pool, index, min(_INSERT_CHUNK, target - have), rng)
        store.backend.insert(records, index=rows)
        have += len(records)
    return time.perf_counter() - t0


def time_recalls(store: MemoryStore, queries: list[str], method: str) -> dict:
    t0 = time.perf_counter()
    store.recall(queries[0], NAMESPACE, top_k=5, method=method)
    cold = time.perf_counter() - t0
    times = []
    for query in queries:
        t0 = time.perf_counter()
        store.recall(query, NAMESPACE, top_k=5, method=method)
        times.append(time.perf_counter() - t0)
    return {"cold_ms": 1000 * cold, "p50_ms": 1000 * percentile(times, 50), "p95_ms": 1000 * percentile(times, 95),
            "queries": len(times)}


def run(r3: R3Mem, url: str, sizes: list[int], locomo: Path, methods: list[str], queries: int = 10,
        pool: int = 256, seed: int = 0) -> dict:
    store = MemoryStore(open_backend(url), r3)
    store.delete_all(NAMESPACE)
    t0 = time.perf_counter()
    records, index, all_queries = real_records(store, r3, locomo, pool)
    store.backend.insert(records, index=index)
    result: dict = {
        "store": store.backend.redacted_url.split("://")[0], "machine": f"{platform.machine()} "
        f"{torch.get_num_threads()} threads", "pool_records": len(records), "pool_compress_s": time.perf_counter() - t0,
        "memory_bytes_per_record": float(np.mean([len(r.memory) for r in records])), "default_method": DEFAULT_METHOD,
        "rows": [],
    }
    rng = np.random.default_rng(seed)
    for size in sorted(sizes):
        fill_s = fill(store, records, index, size, rng)
        for method in methods:
            row = {"records": size, "method": method, "default": method == DEFAULT_METHOD, "fill_s": fill_s,
                   **time_recalls(store, all_queries[:queries], method)}
            result["rows"].append(row)
            print(f"{result['store']:>10} {size:>7} {method:>10}  cold {row['cold_ms']:9.1f} ms  "
                  f"p50 {row['p50_ms']:9.1f} ms  p95 {row['p95_ms']:9.1f} ms", flush=True)
    store.delete_all(NAMESPACE)
    store.close()
    return result


def format_table(results: list[dict]) -> str:
    lines = ["| store | records | method | recall p50 (ms) | recall p95 (ms) | first recall (ms) |",
             "|---|---:|---|---:|---:|---:|"]
    for result in results:
        for row in result["rows"]:
            name = f"{row['method']} (default)" if row.get("default") else row["method"]
            lines.append(f"| {result['store']} | {row['records']:,} | {name} | {row['p50_ms']:.0f} | "
                         f"{row['p95_ms']:.0f} | {row['cold_ms']:.0f} |")
    return "\n".join(lines)
