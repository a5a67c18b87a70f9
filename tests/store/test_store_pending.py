"""Text records are written at once and their memories in batches: nothing lost, nothing different."""

from __future__ import annotations

import pytest
from tests.embedders import HashEmbedder

from r3mem.errors import InvalidInput
from r3mem.store import MemoryStore, Namespace
from r3mem.store.location import open_backend

ALICE = Namespace(user="alice")
TURNS = [f"Turn {i}: we talked about {topic}." for i, topic in
         enumerate(["zucchini", "the Alps", "Friday", "soup", "a puppy", "the river", "Rome", "tea"])]


def _store(url, model, **kw) -> MemoryStore:
    return MemoryStore(open_backend(url), model, embedder=HashEmbedder(), **kw)


def test_adds_defer_the_model_until_a_batch_is_full(store_url, tiny, monkeypatch):
    calls = []
    store = _store(store_url, tiny, memory_batch=4)
    original = store.encoder.memories
    monkeypatch.setattr(store.encoder, "memories", lambda texts: calls.append(len(texts)) or original(texts))
    for text in TURNS[:3]:
        [record] = store.add(ALICE, text=text, levels=("document",))
        assert record.pending and record.memory == b"" and record.text == text
    assert calls == [] and len(store.backend.pending(ALICE)) == 3
    assert store.recall("zucchini", ALICE, top_k=1)[0].text == TURNS[0]  # found before its memory exists
    store.add(ALICE, text=TURNS[3], levels=("document",))  # the fourth fills the batch
    assert calls == [4] and store.backend.pending(ALICE) == []
    store.close()


def test_flushed_memories_equal_those_written_at_add(store_url, tiny, tmp_path):
    lazy = _store(store_url, tiny, memory_batch=16)
    for text in TURNS:
        lazy.add(ALICE, text=text, levels=("document",))
    assert lazy.flush() == len(TURNS) and lazy.flush() == 0
    eager = _store(f"sqlite:///{tmp_path / 'eager.sqlite3'}", tiny, memory_batch=0)
    for text in TURNS:
        assert not eager.add(ALICE, text=text, levels=("document",))[0].pending
    written = {r.text: r for r in lazy.list(ALICE)}
    for record in eager.list(ALICE):
        twin = written[record.text]
        twin.verify()
        assert twin.memory_shape == record.memory_shape and twin.key == record.key
        assert (twin.memory_tensor() - record.memory_tensor()).abs().max() < 1e-2  # fp16, batched vs single
    lazy.close()
    eager.close()


def test_pending_records_survive_a_crash_and_the_next_store_writes_them(store_url, tiny):
    first = _store(store_url, tiny, memory_batch=16)
    records = [first.add(ALICE, text=t, levels=("document",))[0] for t in TURNS[:3]]
    first.backend.close()  # the process dies: no close(), no flush
    second = _store(store_url, tiny)
    assert {r.id for r in second.backend.pending(ALICE)} == {r.id for r in records}
    assert second.recall("puppy or zucchini", ALICE, top_k=3, method="memory")  # memory recall flushes first
    assert second.backend.pending(ALICE) == []
    for record in second.list(ALICE):
        record.verify()
        assert record.memory_tensor().shape[0] == len(record.segment_tokens) >= 1
    second.close()


def test_close_writes_what_the_store_left_pending(store_url, tiny):
    store = _store(store_url, tiny, memory_batch=16)
    store.add(ALICE, text=TURNS[0], levels=("document",))
    store.close()
    again = _store(store_url, None)
    assert again.backend.pending(ALICE) == [] and not again.list(ALICE)[0].pending
    again.close()


def test_memory_only_records_are_never_deferred_and_pending_memory_is_not_read(store, tiny):
    [record] = store.add(ALICE, text="Keep no text of this.", levels=("document",), store_text=False)
    assert not record.pending and record.memory
    [pending] = store.add(ALICE, text="This one keeps its text.", levels=("document",))
    with pytest.raises(InvalidInput, match="not written yet"):
        pending.memory_tensor()
    with pytest.raises(InvalidInput):
        MemoryStore(store.backend, tiny, memory_batch=-1)


def test_recall_without_reconstruction_gives_memory_only_hits_no_text(store, monkeypatch):
    store.add(ALICE, text="Keep no text of this.", levels=("document",), store_text=False)
    monkeypatch.setattr(store, "text_of", lambda *a, **kw: pytest.fail("reconstructed"))
    [hit] = store.recall("text", ALICE, top_k=1, reconstruct=False)
    assert (hit.text, hit.text_source) == ("", "none")
