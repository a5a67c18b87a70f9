"""What an add costs: chat turns (a user and an assistant message) of held-out LoCoMo conv-42, added one at a time
to a fresh SQLite store with the real model, their memories written by each add itself (`memory_batch` 0: one
forward pass per record) and in the store's default batches (16 records, one padded pass).

Usage: python scripts/bench_add.py [--json out.json]. Under concurrent load, `r3mem bench-service` gives add latency.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

from r3mem.api import R3Mem
from r3mem.demo_conversation import conversation_turns
from r3mem.machine import run_info
from r3mem.store import MemoryStore
from r3mem.store.location import open_backend
from r3mem.store.memory_store import DEFAULT_MEMORY_BATCH
from r3mem.store.namespace import Namespace

LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"


def measure(r3: R3Mem, pairs: list[list[str]], memory_batch: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        store = MemoryStore(open_backend(f"sqlite:///{folder}/bench.sqlite3"), r3, memory_batch=memory_batch)
        user = Namespace(user="bench")
        store.add(user, messages=[{"role": "user", "content": "warm up"}])  # first calls pay one-off costs
        tokens, latencies = 0, []
        start = time.perf_counter()
        for said, answered in pairs:
            t0 = time.perf_counter()
            store.add(user, messages=[{"role": "user", "content": said}, {"role": "assistant", "content": answered}])
            latencies.append(time.perf_counter() - t0)
            tokens += len(r3.tokenize(said)) + len(r3.tokenize(answered))
        store.flush()  # the memories still pending count too
        seconds = time.perf_counter() - start
        store.close()
    return {"memory_batch": memory_batch, "adds": len(pairs), "tokens": tokens, "seconds": round(seconds, 2),
            "tok_s": round(tokens / seconds, 1), "add_p50_ms": round(1000 * median(latencies), 1),
            "add_max_ms": round(1000 * max(latencies), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=320, help="LoCoMo turns to add, two per add (default 320)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    r3 = R3Mem.load()
    turns = conversation_turns(LOCOMO, "conv-42")[: args.turns]
    pairs = [turns[i:i + 2] for i in range(0, len(turns) - 1, 2)]
    rows = [measure(r3, pairs, batch) for batch in (0, DEFAULT_MEMORY_BATCH)]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "run": run_info()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
