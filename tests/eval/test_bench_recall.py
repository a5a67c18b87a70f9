"""`r3mem bench-recall` on the tiny model: indexed copies fill each size, rows name the default method."""

import json

import numpy as np
from tests.embedders import HashEmbedder
from tests.eval.test_eval_locomo import CONV_A

from r3mem.eval import bench_recall
from r3mem.store import memory_store
from r3mem.store.recall import DEFAULT_METHOD


def test_rows_per_size_and_method_say_which_is_the_default(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(memory_store, "default_embedder", HashEmbedder)
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([CONV_A]))
    url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    result = bench_recall.run(tiny, url, [10, 30], data, [DEFAULT_METHOD, "bm25"], queries=3)
    rows = result["rows"]
    assert [(r["records"], r["method"], r["default"]) for r in rows] == [
        (10, DEFAULT_METHOD, True), (10, "bm25", False), (30, DEFAULT_METHOD, True), (30, "bm25", False)]
    assert all(r["p95_ms"] >= r["p50_ms"] > 0 and r["cold_ms"] > 0 and r["queries"] == 3 for r in rows)
    assert result["pool_records"] == 6 and result["default_method"] == DEFAULT_METHOD
    assert "fused (default)" in bench_recall.format_table([result])


def test_copies_are_indexed_with_their_own_vectors(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(memory_store, "default_embedder", HashEmbedder)
    data = tmp_path / "locomo.json"
    data.write_text(json.dumps([CONV_A]))
    store = memory_store.MemoryStore(memory_store.open_backend(f"sqlite:///{tmp_path / 'b.sqlite3'}"), tiny)
    records, index, _ = bench_recall.real_records(store, tiny, data, 6)
    store.backend.insert(records, index=index)
    bench_recall.fill(store, records, index, 20, np.random.default_rng(0))
    embedder_calls = store.dense.embedder.calls
    ids, vectors = store.dense.matrix(bench_recall.NAMESPACE, None, None)
    assert len(ids) == 20 and len({v.tobytes() for v in vectors}) == 20  # jittered: no two alike
    assert store.dense.embedder.calls == embedder_calls  # nothing left to embed at recall time
    assert len(store.backend.lexical("zucchini", bench_recall.NAMESPACE, k=100)) > 2
