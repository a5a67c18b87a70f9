"""MemoryStore on both backends (SQLite file, PostgreSQL schema) with the tiny model."""

from __future__ import annotations

import sqlite3
import tarfile
import threading
import time

import pytest
import torch
from tests.conftest import tiny_base

from r3mem.decode.options import Decoding
from r3mem.errors import CheckpointMismatch, DuplicateRecord, InvalidInput, RecordNotFound, StoreError
from r3mem.store import MemoryStore, Namespace
from r3mem.store.encoder import RecordEncoder, document_units
from r3mem.store.location import open_backend
from r3mem.store.record import decode_memory, encode_memory

ALICE = Namespace(user="alice")
BOB = Namespace(user="bob")
TEXT = (
    "Alice met Bob in Paris on 3 May 1999. They shared 12 apples.\n\n"
    "Later that week, Carol arrived from Rome. She stayed until Friday."
)


def _by_id(records):
    return {r.id: r for r in records}


def _memories_written(store, namespace: Namespace) -> None:
    """Every pending memory of `namespace` written: a local store writes them now; a live server
    writes them in the background (no route flushes), so wait until it has."""
    if isinstance(store, MemoryStore):
        store.flush(namespace)
        return
    deadline = time.monotonic() + 60
    while any(r.memory_shape == () for r in store.list(namespace, limit=1000)):
        assert time.monotonic() < deadline, "the server left memories pending for 60 s"
        time.sleep(0.05)


def test_add_builds_a_hierarchy_with_parents_first(api_store):
    records = api_store.add(ALICE, text=TEXT, metadata={"source": "test"})
    levels = [r.level for r in records]
    assert levels[0] == "document" and records[0].parent_id is None
    assert {"paragraph", "sentence", "entity"} <= set(levels)
    seen = set()
    for record in records:
        assert record.parent_id is None or record.parent_id in seen
        seen.add(record.id)
        assert record.metadata["source"] == "test"
        assert record.namespace == ALICE
    entities = {r.text for r in records if r.level == "entity"}
    assert {"Paris", "Rome", "12"} <= entities
    assert len(api_store.list(ALICE, limit=1000)) == len(records)


def test_one_sentence_is_one_record_not_a_copy_per_level(api_store):
    records = api_store.add(ALICE, text="The cat sleeps.", levels=("document", "paragraph", "sentence"))
    assert [r.level for r in records] == ["document"]


def test_messages_become_turns(api_store):
    records = api_store.add(ALICE, messages=[{"role": "user", "content": "I love tea."},
                                         {"role": "assistant", "content": "Noted: tea."}])
    assert [(r.level, r.text) for r in records] == [("turn", "user: I love tea."), ("turn", "assistant: Noted: tea.")]


def test_namespaces_are_isolated(api_store):
    mine = api_store.add(ALICE, text=TEXT)
    theirs = api_store.add(BOB, text="Bob keeps a secret: the code is 4471.")
    assert all(h.record.namespace == ALICE for h in api_store.recall("secret code", ALICE, top_k=50))
    for record in theirs:
        with pytest.raises(RecordNotFound):
            api_store.get(record.id, ALICE)
        with pytest.raises(RecordNotFound):
            api_store.delete(record.id, ALICE)
        with pytest.raises(RecordNotFound):
            api_store.history(record.id, ALICE)
    assert api_store.stats(BOB)["records"] == len(theirs)
    assert api_store.delete_all(ALICE) == len(mine)
    assert api_store.stats(BOB)["records"] == len(theirs)


def test_namespace_filter_spans_agents_and_sessions(api_store):
    api_store.add(Namespace(user="alice", session="s1"), text="First session note.")
    api_store.add(Namespace(user="alice", session="s2"), text="Second session note.")
    assert api_store.stats(ALICE)["records"] == 2
    assert api_store.stats(Namespace(user="alice", session="s1"))["records"] == 1
    assert api_store.stats(Namespace(session="s1"))["records"] == 1


@pytest.mark.parametrize("method", ["memory", "key", "bm25", "hybrid"])
def test_recall_methods_rank_within_namespace(api_store, method):
    api_store.add(ALICE, text=TEXT)
    hits = api_store.recall("apples in Paris", ALICE, top_k=3, method=method)
    assert 1 <= len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    if method == "bm25":
        assert "apples" in hits[0].text


def test_recall_level_filter(api_store):
    api_store.add(ALICE, text=TEXT)
    hits = api_store.recall("Paris", ALICE, top_k=10, level="entity")
    assert hits and all(h.record.level == "entity" for h in hits)


def test_memory_only_records_are_reconstructed_and_text_is_not_stored(store, store_url):
    records = store.add(ALICE, text="Never write this sentence down.", store_text=False)
    assert all(r.text is None for r in records)
    hit = store.recall("sentence", ALICE, top_k=1)[0]
    assert hit.text_source == "reconstructed" and isinstance(hit.text, str)
    if store_url.startswith("sqlite:///"):
        store.close()
        raw = b"".join(p.read_bytes() for p in _sqlite_files(store_url))
        assert b"Never write this" not in raw


def test_recall_reconstructs_with_the_requested_decoding(store):
    store.add(ALICE, text="Never write this sentence down.", store_text=False)
    texts = {}
    for decoding in (Decoding(beams=1), Decoding(beams=3), Decoding(beams=2, samples=3), Decoding(guidance=0.0),
                     Decoding(guidance=50.0)):
        hit = store.recall("sentence", ALICE, top_k=1, decoding=decoding)[0]
        assert hit.text_source == "reconstructed"
        assert hit.text == store.encoder.r3.expand(store.encoder.as_memory(hit.record), decoding=decoding)
        texts[decoding] = hit.text
    assert texts[Decoding(guidance=0.0)] != texts[Decoding(guidance=50.0)]  # the guidance reaches the expansion
    assert store.ask("sentence?", ALICE, top_k=1, decoding=Decoding(guidance=0.0)).record_ids == [hit.record.id]
    for bad in (4, {"beams": 4}, None):
        with pytest.raises(InvalidInput, match="decoding must be a Decoding"):
            store.recall("sentence", ALICE, decoding=bad)


def test_the_stores_decoding_reaches_the_decoder_unchanged(store, monkeypatch):
    """Every store call that reconstructs hands the caller's one value to the decoder, spread and bag too."""
    import r3mem.api

    seen = []
    real = r3mem.api.expand_batch
    monkeypatch.setattr(r3mem.api, "expand_batch",
                        lambda net, snaps, counts, decoding, *rest: seen.append(decoding)
                        or real(net, snaps, counts, decoding, *rest))
    record = store.add(ALICE, text="Never write this sentence down.", store_text=False)[0]
    decoding = Decoding(beams=2, samples=0, guidance=3.0, spread=0.5, bag=1.5)
    store.recall("sentence", ALICE, top_k=1, decoding=decoding)
    store.ask("sentence?", ALICE, top_k=1, decoding=decoding)
    store.expand(record.id, ALICE, decoding=decoding)
    assert seen and all(got is decoding for got in seen)


def _sqlite_files(url):
    from pathlib import Path

    path = Path(url[len("sqlite:///"):])
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


def test_recall_refuses_records_of_another_checkpoint(store, store_url):
    store.add(ALICE, text=TEXT)
    store.flush()  # the memories are this store's model's
    from r3mem.api import R3Mem

    other = MemoryStore(open_backend(store_url), R3Mem.from_base(tiny_base(seed=1)))
    for method in ("memory", "key", "hybrid"):  # these read the memories with the loaded model
        with pytest.raises(CheckpointMismatch, match="another model or checkpoint"):
            other.recall("Paris", ALICE, method=method)
    # the index methods read text and vectors only: a new checkpoint does not hide stored text
    assert "Paris" in other.recall("Paris", ALICE, method="fused", top_k=1)[0].text
    other.close()


def test_update_text_rebuilds_the_subtree_and_history_keeps_every_change(api_store):
    records = api_store.add(ALICE, text=TEXT)
    doc = records[0]
    new = api_store.update(doc.id, ALICE, text="Dan flew to Oslo. He liked it.", metadata={"v": 2})
    assert new.id == doc.id and new.text.startswith("Dan") and new.metadata == {"v": 2}
    remaining = api_store.list(ALICE, limit=1000)
    assert doc.id in _by_id(remaining)
    assert not set(_by_id(records)) - {doc.id} & set(_by_id(remaining))
    assert "Oslo" in {r.text for r in remaining if r.level == "entity"}
    api_store.delete(doc.id, ALICE)
    ops = [e.op for e in api_store.history(doc.id, ALICE)]
    assert ops == ["add", "update", "delete"]
    assert api_store.stats(ALICE)["records"] == 0


def test_delete_removes_descendants(api_store):
    records = api_store.add(ALICE, text=TEXT)
    paragraph = next(r for r in records if r.level == "paragraph")
    deleted = api_store.delete(paragraph.id, ALICE)
    children = {r.id for r in records if r.parent_id == paragraph.id}
    assert paragraph.id in deleted and children <= set(deleted)
    assert api_store.stats(ALICE)["records"] == len(records) - len(deleted)


def test_export_import_round_trip_is_identical(api_store, tmp_path):
    records = api_store.add(ALICE, text=TEXT, metadata={"k": [1, 2]})
    api_store.add(ALICE, messages=[{"role": "user", "content": "Tea, no sugar."}], store_text=False)
    _memories_written(api_store, ALICE)
    before = api_store.list(ALICE, limit=1000)
    archive = tmp_path / "alice.r3a"
    assert api_store.export(ALICE, archive) == len(before)
    api_store.delete_all(ALICE)
    assert api_store.import_(archive) == len(before)
    after = api_store.list(ALICE, limit=1000)
    assert [r.__dict__ for r in after] == [r.__dict__ for r in before]
    with pytest.raises(DuplicateRecord):  # the same ids again: refused whole
        api_store.import_(archive)
    assert len(api_store.list(ALICE, limit=1000)) == len(before)
    with pytest.raises(InvalidInput, match="outside"):
        api_store.import_(archive, scope=BOB)
    assert records


def test_import_refuses_corrupt_traversing_and_oversized_archives(api_store, tmp_path):
    api_store.add(ALICE, text=TEXT)
    archive = tmp_path / "a.r3a"
    api_store.export(ALICE, archive)
    api_store.delete_all(ALICE)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "corrupt.r3a"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(InvalidInput):
        api_store.import_(corrupt)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        tar.add(archive, arcname="../../etc/manifest.json")
    with pytest.raises(InvalidInput, match="must hold exactly"):
        api_store.import_(evil)
    from r3mem.store import archive as archive_mod

    with pytest.raises(InvalidInput, match="limit"):
        archive_mod.read(archive, max_bytes=10)
    assert api_store.stats(ALICE)["records"] == 0


def test_persists_across_reopen(store_url, tiny):
    first = MemoryStore(open_backend(store_url), tiny)
    first.add(ALICE, text=TEXT)
    first.flush()
    records = first.list(ALICE, limit=1000)
    first.close()
    second = MemoryStore(open_backend(store_url), tiny)
    again = _by_id(second.list(ALICE, limit=1000))
    assert set(again) == set(_by_id(records))
    for record in records:
        again[record.id].verify()
        assert again[record.id].checksum == record.checksum
    second.close()


def test_corrupt_memory_blob_is_detected(store, store_url):
    store.add(ALICE, text="A short note.")
    store.flush()
    record = store.list(ALICE)[0]
    if store_url.startswith("sqlite:///"):
        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.execute("UPDATE records SET memory = zeroblob(length(memory)) WHERE id = ?", (record.id,))
        conn.commit()
        conn.close()
    else:
        with store.backend._tx(write=True) as q:
            q("UPDATE records SET memory = ? WHERE id = ?", (b"\0" * len(record.memory), record.id))
    with pytest.raises(StoreError, match="checksum"):
        store.get(record.id, ALICE)


@pytest.mark.parametrize("bad", [
    {"text": ""}, {"text": "   "}, {"text": "bin\x00ary"}, {"text": 12}, {},
    {"text": "ok", "messages": [{"role": "user", "content": "x"}]},
    {"messages": []}, {"messages": [{"role": "robot", "content": "x"}]}, {"messages": [{"content": ""}]},
    {"text": "ok", "metadata": ["not", "a", "dict"]}, {"text": "ok", "metadata": {"x": object()}},
    {"text": "ok", "levels": ("chapter",)}, {"text": "x" * 200_001},
])
def test_bad_input_is_refused_and_changes_nothing(api_store, bad):
    api_store.add(ALICE, text=TEXT)
    _memories_written(api_store, ALICE)  # else a background write may change memory_bytes meanwhile
    before = api_store.stats(ALICE)
    with pytest.raises(InvalidInput):
        api_store.add(ALICE, **bad)
    assert api_store.stats(ALICE) == before


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"top_k": 101}, {"level": "chapter"}, {"method": "magic"}])
def test_bad_recall_arguments(api_store, kwargs):
    with pytest.raises(InvalidInput):
        api_store.recall("anything", ALICE, **kwargs)


@pytest.mark.parametrize("fields", [{}, {"user": ""}, {"user": "../etc"}, {"user": "a" * 129}, {"agent": "x y"}])
def test_invalid_namespaces(fields):
    with pytest.raises(InvalidInput):
        Namespace(**fields)


def test_concurrent_writers_lose_nothing(api_store):
    errors, written = [], []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            for i in range(5):
                records = api_store.add(Namespace(user="alice", session=f"w{n}"), text=f"Writer {n} note {i}.")
                with lock:
                    written.extend(r.id for r in records)
        except Exception as exc:  # collected: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(_by_id(api_store.list(ALICE, limit=1000))) == set(written)  # the service's largest page


def test_int8_memory_round_trips_within_quantisation_error():
    x = torch.randn(2, 4, 64)
    y = decode_memory(encode_memory(x, "int8"), "int8", tuple(x.shape))
    assert torch.allclose(x, y, atol=float(x.abs().max()) / 127 + 1e-3)
    assert torch.equal(decode_memory(encode_memory(x, "float16"), "float16", tuple(x.shape)), x.half().float())
    with pytest.raises(StoreError):
        decode_memory(b"\0" * 7, "float16", (2, 4, 64))


def test_batched_compression_matches_one_at_a_time(tiny):
    encoder = RecordEncoder(tiny, ratio=4)
    texts = ["A short one.", "A longer one here.", "Mid size text.", "Hi."]
    batched = encoder.memories(texts)
    net = tiny.network
    for text, memory in zip(texts, batched, strict=True):
        ids = tiny.tokenize(text)
        assert len(ids) <= tiny.config.segment_len
        m = max(1, -(-len(ids) // 4))  # the unit's own length over the ratio
        assert memory.snapshots.shape[1] == m and memory.token_counts == [len(ids)]
        with torch.no_grad():
            single = net.write(net.initial(1, m), torch.tensor([ids]))
        assert torch.allclose(memory.snapshots.float(), single.half().float(), atol=2e-2)
    long_text = " ".join(["word"] * 200)  # past one segment: recurrent, a full segment's m
    memory = encoder.memories([long_text])[0]
    assert len(memory) > 1 and memory.snapshots.shape[1] == tiny.config.memory_tokens_for(4)


def test_document_units_skip_duplicates_and_keep_parents():
    units = document_units("One sentence only.", ("document", "paragraph", "sentence", "entity"))
    assert [u.level for u in units] == ["document"]
    units = document_units(TEXT, ("paragraph", "sentence"))
    assert units[0].level == "paragraph" and units[0].parent is None
    assert all(u.parent is not None for u in units if u.level == "sentence")


def test_chat_recalls_earlier_turns_and_stores_both_sides(store):
    carol = Namespace(user="carol")
    store.chat("My cat is called Whiskers.", carol)
    answer = store.chat("What is my cat called?", carol)
    turns = store.list(carol, level="turn")
    assert [t.text.split(":")[0] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0].id in answer.record_ids  # the first run's turn was recalled for the second
